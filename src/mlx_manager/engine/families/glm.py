from mlx_manager.engine.families.base import THINK, Family

# GLM-4.5/4.6: <tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>, <think> reasoning;
# the turn ends when the model hands over to the user or to a tool observation.
GLM4 = Family(
    name="glm4",
    model_types=("glm4", "glm4_moe", "glm"),
    end_of_turn_tokens=("<|user|>", "<|observation|>", "<|endoftext|>"),
    tool_format="glm4",
    reasoning=THINK,
)
