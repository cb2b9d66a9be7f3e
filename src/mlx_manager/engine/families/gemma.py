from mlx_manager.engine.families.base import Family

# Gemma 3 has no tool tokens; by convention it answers with a ```tool_code``` call or a JSON object.
GEMMA = Family(
    name="gemma",
    model_types=("gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n"),
    end_of_turn_tokens=("<end_of_turn>", "<eos>"),
    tool_format="gemma",
)
