from mlx_manager.engine.families.base import Family

# gpt-oss speaks harmony: analysis (reasoning), commentary (tool calls) and final channels.
# <|call|> ends a turn with a tool call, <|return|> a final answer.
GPT_OSS = Family(
    name="gpt-oss",
    model_types=("gpt_oss",),
    end_of_turn_tokens=("<|return|>", "<|call|>"),
    tool_format="harmony",
)
