from mlx_manager.engine.families.base import Family

# Llama 3.x ends turns with <|eot_id|>; <|eom_id|> ends a turn that awaits a tool result.
# Tool calls are a bare JSON object {"name", "parameters"}, optionally after <|python_tag|>.
LLAMA3 = Family(
    name="llama3",
    model_types=("llama",),
    end_of_turn_tokens=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    marker_tokens=("<|eot_id|>",),
    tool_format="llama3_json",
)
