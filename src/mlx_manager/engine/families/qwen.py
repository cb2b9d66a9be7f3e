from mlx_manager.engine.families.base import THINK, Family

# Qwen's vision-language models (the *_vl types) share their language model's template conventions.
_CHATML_TYPES: tuple[str, ...] = (
    *("qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "qwen3_next", "llama", "mistral"),
    *("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"),
)
_CHATML_END = ("<|im_end|>", "<|endoftext|>")


def _chatml(name: str, marker: str, tool_format: str | None = None, reasoning: tuple[str, str] | None = None) -> Family:
    """A ChatML family (the model types and turn end above), told apart from the others by one marker token."""
    return Family(
        name=name,
        model_types=_CHATML_TYPES,
        end_of_turn_tokens=_CHATML_END,
        marker_tokens=(marker,),
        tool_format=tool_format,
        reasoning=reasoning,
    )


# Qwen3 (and QwQ): ChatML, Hermes-style <tool_call> JSON, <think> reasoning the template can switch off.
QWEN3 = _chatml("qwen3", "<think>", tool_format="hermes", reasoning=THINK)

# Qwen2.5 and other ChatML models trained on Hermes tool calls.
QWEN25 = _chatml("qwen2.5", "<tool_call>", tool_format="hermes")

# Plain ChatML (SmolLM2 and friends): a turn ends with <|im_end|>, no tool-call convention.
CHATML = _chatml("chatml", "<|im_end|>")
