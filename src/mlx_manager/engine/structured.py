"""Which grammar a chat request's output gets: its response format or a forced tool call, framed the family's way.

A reasoning model may still reason first: the grammar allows (or, when the prompt opened the block, requires)
a reasoning block and constrains only what follows it; `max_reasoning_tokens` then bounds that block. A prompt
that allows no reasoning (Anthropic's forced tool use) gets the answer from the first token. A forced call must
fit in the tokens left: reasoning the client did not bound stops where the call's estimated size still fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from mlx_manager.engine.constraints import (
    ConstraintError,
    FramedSpec,
    JsonObjectSpec,
    JsonSchemaSpec,
    Preamble,
    ToolCallSpec,
    ToolFunction,
)
from mlx_manager.engine.constraints.sizing import sample_call
from mlx_manager.engine.constraints.specs import WIDEST_GAP
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.families import Family
from mlx_manager.engine.types import ChatPrompt, Prompt, SamplingParams

HARMONY = "harmony"  # gpt-oss: its channels carry reasoning as well as tool calls
ReasoningMode = Literal["none", "optional", "open"]

# How each tool format writes a call, as grammar wrappers around the arguments JSON.
_WRAPPERS: dict[str, dict[str, Any]] = {
    "hermes": {"prefix": "<tool_call>\n", "suffix": "\n</tool_call>", "separator": "\n"},
    "glm4": {"prefix": "<tool_call>", "suffix": "</tool_call>", "separator": "\n"},
    "llama3_json": {"arguments_key": "parameters", "separator": "; "},
    "mistral": {"begin": "[TOOL_CALLS][", "end": "]", "separator": ", "},
    "phi4": {"begin": "<|tool_call|>[", "end": "]<|/tool_call|>", "separator": ", "},
    "gemma": {},
    "deepseek": {
        "begin": "<｜tool▁calls▁begin｜>",
        "end": "<｜tool▁calls▁end｜>",
        "prefix": "<｜tool▁call▁begin｜>",
        "head": "function<｜tool▁sep｜>{name}\n```json\n",
        "tail": "\n```",
        "suffix": "<｜tool▁call▁end｜>",
        "separator": "\n",
    },
    HARMONY: {"head": "<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>", "suffix": "<|call|>"},
}
_SINGLE_CALL = {"gemma", HARMONY}  # harmony: one call per message, then <|call|> hands over to the tool
_HARMONY_ANALYSIS = Preamble(open="<|channel|>analysis<|message|>", close="<|end|><|start|>assistant")
_HARMONY_FINAL = "<|channel|>final<|message|>"
# A forced call's room after reasoning: its estimated size, and at least this share of max_tokens.
CALL_SHARE = 4


@dataclass(frozen=True)
class Constraint:
    """The spec to compile, and how the output starts (inside reasoning, or where reasoning may come first)."""

    spec: FramedSpec
    reasoning: ReasoningMode


def reasoning_opened(rendered: str, tags: tuple[str, str]) -> bool:
    """True when the template left a reasoning block open, so generation starts inside it."""
    start, end = tags
    return rendered.rfind(start) > rendered.rfind(end)


def reasoning_mode(family: Family, rendered: str | None) -> ReasoningMode:
    """Whether the output may begin with reasoning: never, optionally, or it already has (the prompt opened it)."""
    if family.tool_format == HARMONY:
        return "optional"
    if family.reasoning is None or rendered is None:
        return "none"
    if reasoning_opened(rendered, family.reasoning):
        return "open"
    if rendered.rstrip().endswith(family.reasoning[1]):  # an empty block: thinking was switched off
        return "none"
    return "optional"


def request_constraint(
    family: Family, prompt: Prompt, params: SamplingParams, rendered: str | None
) -> Constraint | None:
    """The grammar a request's output must follow, or None for free text."""
    inner: JsonObjectSpec | JsonSchemaSpec | ToolCallSpec | None = None
    if params.response_format is not None:
        schema = params.response_format.get("schema")
        inner = JsonSchemaSpec(schema) if schema is not None else JsonObjectSpec()
    if isinstance(prompt, ChatPrompt) and prompt.force_tool is not None:
        only = None if prompt.force_tool == "required" else prompt.force_tool
        inner = forced_tool_spec(family, prompt.tools or [], only, prompt.parallel_tool_calls)
    if inner is None:
        return None
    reasons = isinstance(prompt, ChatPrompt) and prompt.allow_reasoning
    mode = reasoning_mode(family, rendered) if reasons else "none"
    preamble: Preamble | None = None
    if reasons and family.tool_format == HARMONY:
        preamble = _HARMONY_ANALYSIS
    elif mode != "none" and family.reasoning is not None:
        start, end = family.reasoning
        preamble = Preamble(open="" if mode == "open" else start, close=end, required=mode == "open")
    if preamble is not None and params.max_reasoning_tokens is not None:
        preamble = Preamble(preamble.open, preamble.close, preamble.required, params.max_reasoning_tokens)
    prefix = _HARMONY_FINAL if family.tool_format == HARMONY and not isinstance(inner, ToolCallSpec) else ""
    return Constraint(FramedSpec(inner, preamble, prefix), mode)


def forced_tool_spec(family: Family, tools: list[dict[str, Any]], only: str | None, parallel: bool) -> ToolCallSpec:
    """The grammar spec for a required call (any of `tools`, or the function named `only`)."""
    fmt = family.tool_format
    if fmt not in _WRAPPERS:
        raise ConstraintError(
            f"Forcing a tool call is not supported for the {family.name} family (tool format {fmt!r});"
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


def fit_forced_call(
    constraint: Constraint | None, max_tokens: int, count_tokens: Callable[[str], int]
) -> Constraint | None:
    """Make a forced tool call fit in `max_tokens`: a 400 when not even its shortest form does, and a bound on
    reasoning the client left unbounded, so the call keeps the larger of its estimated size and a share of
    `max_tokens` (no reasoning at all when that leaves none)."""
    if constraint is None or not isinstance(constraint.spec.inner, ToolCallSpec):
        return constraint
    spec, calls, pre = constraint.spec, constraint.spec.inner, constraint.spec.preamble
    closing = count_tokens(pre.close) if pre is not None and pre.required else 0  # an opened block must close
    shortest = min(count_tokens(sample_call(calls, f, shortest=True).text) for f in calls.functions) + closing
    if max_tokens < shortest:
        raise InvalidRequestError(
            f"The forced tool call needs at least {shortest} tokens, but only {max_tokens} may be generated;"
            " raise max_tokens.",
            param="max_tokens",
        )
    if pre is None or pre.max_tokens is not None:  # no reasoning, or the client bounded it
        return constraint
    typical = max(_typical_tokens(calls, f, count_tokens) for f in calls.functions)
    room = max(typical, max_tokens // CALL_SHARE)
    tags = count_tokens(pre.open) + count_tokens(pre.close) + 4  # its tags, then up to 4 whitespace tokens
    budget = max_tokens - room - tags
    if budget <= 0 and not pre.required:
        return Constraint(FramedSpec(calls, None, spec.prefix), "none")
    bounded = replace(pre, max_tokens=max(budget, 0), strict=False)  # unenforceable (plain-text tags): unbounded
    return Constraint(FramedSpec(calls, bounded, spec.prefix), constraint.reasoning)


def _typical_tokens(calls: ToolCallSpec, fn: ToolFunction, count_tokens: Callable[[str], int]) -> int:
    # A weak model may write strings a character per token and the widest whitespace at each gap.
    sample = sample_call(calls, fn, shortest=False)
    return count_tokens(sample.text) + sample.string_chars + sample.gaps * count_tokens(WIDEST_GAP)
