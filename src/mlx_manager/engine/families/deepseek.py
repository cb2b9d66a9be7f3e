from mlx_manager.engine.families.base import THINK, Family

# DeepSeek-R1 and its Qwen/Llama distills: <think> opened by the template, full-width-bar tool markers.
DEEPSEEK_R1 = Family(
    name="deepseek-r1",
    model_types=("deepseek_v3", "deepseek_v2", "qwen2", "llama"),
    end_of_turn_tokens=("<｜end▁of▁sentence｜>",),
    marker_tokens=("<｜end▁of▁sentence｜>",),
    tool_format="deepseek",
    reasoning=THINK,
)
