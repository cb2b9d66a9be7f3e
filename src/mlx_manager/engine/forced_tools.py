"""How each family writes a tool call, as grammar wrappers, so `tool_choice: required` can be enforced."""

from __future__ import annotations

from typing import Any

from mlx_manager.engine.constraints import ConstraintError, ToolCallSpec, ToolFunction
from mlx_manager.engine.families import Family

# The JSON call object sits between these literals; formats that put the name outside JSON (deepseek,
# harmony) are not enforceable this way yet.
_WRAPPERS: dict[str, dict[str, Any]] = {
    "hermes": {"prefix": "<tool_call>\n", "suffix": "\n</tool_call>", "separator": "\n"},
    "glm4": {"prefix": "<tool_call>", "suffix": "</tool_call>", "separator": "\n"},
    "llama3_json": {"arguments_key": "parameters", "separator": "; "},
    "mistral": {"begin": "[TOOL_CALLS][", "end": "]", "separator": ", "},
    "phi4": {"begin": "<|tool_call|>[", "end": "]<|/tool_call|>", "separator": ", "},
    "gemma": {},
}
_SINGLE_CALL = {"gemma"}


def forced_tool_spec(family: Family, tools: list[dict[str, Any]], only: str | None, parallel: bool) -> ToolCallSpec:
    """The grammar spec for a required call (any of `tools`, or the function named `only`)."""
    fmt = family.tool_format
    if fmt not in _WRAPPERS:
        raise ConstraintError(
            f"Forcing a tool call is not supported for the {family.name} family (tool format {fmt!r}) yet;"
            " use tool_choice 'auto'.",
            param="tool_choice",
        )
    functions = [
        ToolFunction(t["function"]["name"], t["function"].get("parameters"))
        for t in tools
        if only is None or t["function"]["name"] == only
    ]
    if not functions:
        raise ConstraintError(f"tool_choice names '{only}', which is not in tools.", param="tool_choice")
    # Parallel calls are capped at one per offered function, so a weak model cannot call forever.
    parallel = parallel and fmt not in _SINGLE_CALL and len(functions) > 1
    return ToolCallSpec(functions, parallel=parallel, max_calls=len(functions) if parallel else None, **_WRAPPERS[fmt])
