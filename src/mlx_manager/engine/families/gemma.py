from mlx_manager.engine.families.base import Family

GEMMA = Family(
    name="gemma",
    model_types=("gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n"),
    end_of_turn_tokens=("<end_of_turn>", "<eos>"),
)
