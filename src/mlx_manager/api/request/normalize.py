"""The concepts every API shares, normalised once: sampling values, tool choice, response formats and reasoning
effort. Each API's translate reads its own wire names and shapes, then hands the values to these functions."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from mlx_manager.api.errors import APIError
from mlx_manager.api.int64 import INT64_MAX
from mlx_manager.api.schema_base import Strict
from mlx_manager.config import default
from mlx_manager.engine.types import SamplingParams


def bad(message: str, param: str) -> APIError:
    return APIError(400, message, param=param)


# --- sampling ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The server's caps on a request: sequences per request (n) and stop strings."""

    max_n: int = default("max_n")
    max_stop: int = default("max_stop_sequences")


class SamplingExtensions(Strict):
    """Sampling values beyond an API's own (vLLM's extensions). A field here, named as in SamplingParams, reaches
    the engine from every API whose request model includes this class, with no other change."""

    # Left out (None): the profile, the model's generation_config.json, the server's [generation] settings, then
    # no filter (engine/generation_defaults.py).
    top_k: int | None = Field(default=None, ge=-1, le=INT64_MAX, description="-1 or 0: no top-k filter.")
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)


class CacheExtension(Strict):
    """Per request: false keeps this request's KV out of the prefix cache, RAM and disk (it still reuses what is
    there), for prompts that must not stay on the machine."""

    cache: bool = Field(default=True, description="false: nothing of this request is written to the prefix cache.")


def sampling_params(req: BaseModel, **given: Any) -> SamplingParams:
    """The engine's sampling values: `given` (what the API names or shapes its own way), then every
    SamplingExtensions field the request model has."""
    values = {name: getattr(req, name) for name in SamplingExtensions.model_fields if name in type(req).model_fields}
    if isinstance(req, CacheExtension):
        values["cache"] = req.cache
    values.update(given)
    if values.get("top_k") is not None:
        values["top_k"] = max(values["top_k"], 0)  # -1 (OpenAI's "off") and 0 both mean no filter
    return SamplingParams(**values)


def explicit_fields(req: BaseModel, renames: Mapping[str, str] | None = None) -> frozenset[str]:
    """The engine names of the values the client set itself (a profile's defaults fill in the rest); `renames`
    maps the API's names to the engine's (max_output_tokens -> max_tokens)."""
    renames = renames or {}
    return frozenset(renames.get(name, name) for name in req.model_fields_set if getattr(req, name) is not None)


def stop_strings(stops: str | Collection[str] | None, limits: Limits, param: str) -> tuple[str, ...]:
    """A string or strings, as a tuple; an empty string stops nothing, so it is dropped (and not counted)."""
    given = [stops] if isinstance(stops, str) else list(stops or [])
    kept = tuple(s for s in given if s)
    if len(kept) > limits.max_stop:
        raise bad(f"At most {limits.max_stop} stop sequences are allowed.", param)
    return kept


def check_n(n: int, limits: Limits) -> int:
    if n > limits.max_n:
        raise bad(f"n must be at most {limits.max_n}, got {n}.", "n")
    return n


# --- tools -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolChoice:
    """A tool_choice in the engine's terms, whatever the API called it: "function" forces the one named."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None
    parallel: bool = True  # whether the reply may hold several calls


@dataclass(frozen=True)
class ToolUse:
    """The tools the model sees (OpenAI function tools; none when it may not call any), the call it must make
    ("required", a function's name, or None) and whether several calls may come back."""

    tools: list[dict[str, Any]]
    force: str | None
    parallel: bool


_MODES: dict[str, Literal["auto", "none", "required"]] = {"auto": "auto", "none": "none", "required": "required"}


def tool_choice(choice: str | dict[str, Any] | None, named: str | None, parallel: bool, shape: str) -> ToolChoice:
    """A tool_choice as the OpenAI APIs send it: a mode, or an object naming a function. `named`: the name the API
    read from its own object shape (`shape`, spelled out in the 400 when neither fits)."""
    if choice is None:
        return ToolChoice(parallel=parallel)
    if isinstance(choice, str) and choice in _MODES:
        return ToolChoice(_MODES[choice], parallel=parallel)
    if isinstance(choice, dict) and named:
        return ToolChoice("function", named, parallel)
    raise bad(f"tool_choice must be 'none', 'auto', 'required' or {shape}.", "tool_choice")


def tool_use(tools: list[dict[str, Any]], choice: ToolChoice) -> ToolUse:
    """`tools`: the request's tools as OpenAI function tools, each already checked by its API."""
    if choice.mode in ("required", "function") and not tools:
        raise bad("tool_choice requires tools.", "tool_choice")
    if choice.mode == "none":
        return ToolUse([], None, choice.parallel)
    if choice.mode == "function" and choice.name not in {t["function"]["name"] for t in tools}:
        raise bad(f"tool_choice names '{choice.name}', which is not in tools.", "tool_choice")
    force = {"auto": None, "required": "required"}.get(choice.mode, choice.name)
    return ToolUse(tools, force, choice.parallel)


# --- structured output ------------------------------------------------------------------------------------------


def response_format(
    kind: Literal["text", "json_object", "json_schema"] | None, schema: Any, missing: str, param: str
) -> dict[str, Any] | None:
    """The engine's response format: None for free text, else JSON, or JSON matching `schema` (`missing`: the
    400's message when there is none, in the API's own words)."""
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if not isinstance(schema, dict):
        raise bad(missing, param)
    return {"type": "json_schema", "schema": schema}


def one_constraint(tools: ToolUse, fmt: dict[str, Any] | None, param: str) -> None:
    """A forced call and a response format are each a grammar over the whole reply: only one may apply."""
    if tools.force is not None and fmt is not None:
        raise bad(f"Use either a forced tool_choice or {param}, not both.", param)


# --- reasoning ---------------------------------------------------------------------------------------------------

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
# The levels both OpenAI APIs (chat completions' reasoning_effort, Responses' reasoning.effort) take.
OpenAIEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
# Every effort level an API takes, as chat templates take it (gpt-oss's knows low, medium and high; the higher
# levels read as high), and whether the level keeps thinking on (off: templates with enable_thinking, e.g. Qwen3).
EFFORTS: dict[Effort, tuple[str, bool]] = {
    "none": ("none", False),
    "minimal": ("minimal", False),
    "low": ("low", True),
    "medium": ("medium", True),
    "high": ("high", True),
    "xhigh": ("high", True),
    "max": ("high", True),
}


def template_kwargs(effort: Effort | None, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The chat template's kwargs: `given` (the client's own, which win), plus what the effort level means."""
    kwargs = dict(given or {})
    if effort is not None:
        level, thinking = EFFORTS[effort]
        kwargs.setdefault("reasoning_effort", level)
        if not thinking:
            kwargs.setdefault("enable_thinking", False)
    return kwargs
