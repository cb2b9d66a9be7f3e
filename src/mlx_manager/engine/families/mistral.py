from mlx_manager.engine.families.base import Family

# Mistral's [INST] format ends the assistant turn with </s>; tool calls follow [TOOL_CALLS].
MISTRAL = Family(
    name="mistral",
    model_types=("mistral", "llama", "mixtral", "mistral3", "ministral3"),
    end_of_turn_tokens=("</s>",),
    marker_tokens=("[INST]",),
    tool_format="mistral",
)
