"""The internal request: what every API's translate produces and `Starter.start` routes."""

from __future__ import annotations

from dataclasses import dataclass

from mlx_manager.api.request.limits import Endpoint
from mlx_manager.engine.types import Prompt, SamplingParams


@dataclass(frozen=True)
class EngineRequest:
    """One generation in the engine's terms, whichever API it came in by."""

    model: str  # as the client named it: a model, or a profile
    prompt: Prompt
    params: SamplingParams
    # The engine names of the sampling values the client set itself; a profile's defaults fill in the rest.
    explicit: frozenset[str] = frozenset()
    n: int = 1
    priority: int = 0
    endpoint: Endpoint = "chat"  # whose time limit applies (api/request/limits)
