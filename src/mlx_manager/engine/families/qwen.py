from mlx_manager.engine.families.base import Family

# Qwen and SmolLM speak ChatML: a turn ends with <|im_end|>.
CHATML = Family(
    name="chatml",
    model_types=("qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "llama", "mistral"),
    end_of_turn_tokens=("<|im_end|>", "<|endoftext|>"),
    marker_tokens=("<|im_end|>",),
)
