"""Sampling defaults: what a request that leaves a value out gets.

The order, first set wins: the request, a profile (applied by the API layer), the model's own
`generation_config.json` (as vLLM does by default), the server's `[generation]` settings, then the API's default.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from mlx_manager.engine.types import SamplingDefaults, SamplingParams

# The sampling values a default can come from the model or the server for.
KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
Source = Literal["request", "profile", "model", "server", "api"]


@dataclass(frozen=True)
class Sampling:
    """The values a sequence samples with, every one set."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float


# OpenAI's and Anthropic's own defaults: no filter, no penalty, temperature 1.
API_DEFAULTS = Sampling(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0)


def _valid(name: str, value: Any) -> float | int | None:
    """A value within the range the APIs accept, else None (a bad config file must not break requests)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    ok = {
        "temperature": 0 <= value <= 2,
        "top_p": 0 < value <= 1,
        "top_k": value >= 0 and float(value).is_integer(),
        "min_p": 0 <= value <= 1,
        "repetition_penalty": value > 0,
    }[name]
    if not ok:
        return None
    return int(value) if name == "top_k" else float(value)


def from_mapping(data: dict[str, Any]) -> SamplingDefaults:
    """The sampling values in a generation_config.json-shaped mapping; out-of-range values are left out."""
    values = {name: v for name in KEYS if (v := _valid(name, data.get(name))) is not None}
    return SamplingDefaults(**values)  # type: ignore[arg-type]


def read_generation_config(folder: Path) -> SamplingDefaults:
    """The model authors' recommendation from the folder's generation_config.json (empty when absent)."""
    path = folder / "generation_config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return SamplingDefaults()
    return from_mapping(data) if isinstance(data, dict) else SamplingDefaults()


def fill(params: SamplingParams, model: SamplingDefaults, server: SamplingDefaults) -> SamplingParams:
    """The request's params with every value it left out taken from the model, else the server, else the API."""
    if all(getattr(params, name) is not None for name in KEYS):
        return params
    values: dict[str, Any] = {name: value for name, (value, _) in resolved(params, model, server).items()}
    return replace(params, **values)


def resolved(
    params: SamplingParams | None, model: SamplingDefaults, server: SamplingDefaults
) -> dict[str, tuple[float | int, Source]]:
    """Each value and where it came from: the request (or the profile it went through), model, server, API."""
    out: dict[str, tuple[float | int, Source]] = {}
    for name in KEYS:
        given = getattr(params, name) if params is not None else None
        layers: list[tuple[Any, Source]] = [
            (given, "request"),
            (getattr(model, name), "model"),
            (getattr(server, name), "server"),
            (getattr(API_DEFAULTS, name), "api"),
        ]
        out[name] = next((v, src) for v, src in layers if v is not None)
    return out


def effective(params: SamplingParams) -> Sampling:
    """The values to sample with; anything still unset (a caller that skipped `fill`) takes the API default."""
    values = {name: getattr(params, name) for name in KEYS}
    return Sampling(**{k: getattr(API_DEFAULTS, k) if v is None else v for k, v in values.items()})
