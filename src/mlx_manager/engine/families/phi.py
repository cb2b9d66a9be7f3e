from mlx_manager.engine.families.base import Family

# Phi-4(-mini): <|end|> closes a turn; tool calls are a JSON list inside <|tool_call|>…<|/tool_call|>.
PHI4 = Family(
    name="phi4",
    model_types=("phi3", "phi4", "phimoe"),
    end_of_turn_tokens=("<|end|>", "<|endoftext|>"),
    tool_format="phi4",
)
