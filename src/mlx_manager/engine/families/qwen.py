from mlx_manager.engine.families.base import THINK, Family

# Qwen's vision-language models (the *_vl types) share their language model's template conventions.
_CHATML_TYPES: tuple[str, ...] = (
    *("qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "qwen3_next", "llama", "mistral"),
    *("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"),
)
_CHATML_END = ("<|im_end|>", "<|endoftext|>")

# Qwen3 (and QwQ): ChatML, Hermes-style <tool_call> JSON, <think> reasoning the template can switch off.
QWEN3 = Family(
    name="qwen3",
    model_types=_CHATML_TYPES,
    end_of_turn_tokens=_CHATML_END,
    marker_tokens=("<think>",),
    tool_format="hermes",
    reasoning=THINK,
)

# Qwen2.5 and other ChatML models trained on Hermes tool calls.
QWEN25 = Family(
    name="qwen2.5",
    model_types=_CHATML_TYPES,
    end_of_turn_tokens=_CHATML_END,
    marker_tokens=("<tool_call>",),
    tool_format="hermes",
)

# Plain ChatML (SmolLM2 and friends): a turn ends with <|im_end|>, no tool-call convention.
CHATML = Family(
    name="chatml",
    model_types=_CHATML_TYPES,
    end_of_turn_tokens=_CHATML_END,
    marker_tokens=("<|im_end|>",),
)
