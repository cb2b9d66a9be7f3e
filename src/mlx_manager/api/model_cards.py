"""What the model listings say about a model beyond its id: context length, loaded, sampling defaults in force."""

from __future__ import annotations

from pydantic import BaseModel

from mlx_manager.engine.adapters.service import Adapters
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.types import ModelInfo
from mlx_manager.manager.profiles import DEFAULTED, ProfileDefaults


class SamplingDefault(BaseModel):
    value: float | int
    # request (never here), profile, model (generation_config.json), server ([generation]) or api
    source: str


def sampling_defaults(
    engine: Engine, info: ModelInfo | None, profile: ProfileDefaults | None = None
) -> dict[str, SamplingDefault]:
    """The values a request that sets none of them gets, and where each comes from; a profile's own values win
    over the model's (`info` is None for a profile whose model only a routing rule knows: its values only)."""
    out: dict[str, SamplingDefault] = {}
    if info is not None:
        out = {k: SamplingDefault(value=v, source=src) for k, (v, src) in engine.sampling_defaults(info).items()}
    for name in DEFAULTED:
        value = getattr(profile, name, None) if profile is not None else None
        if value is not None and name != "max_tokens":
            out[name] = SamplingDefault(value=value, source="profile")
    return out


def is_loaded(engine: Engine, model_id: str) -> bool:
    if model_id in engine.listed:  # another backend's model (distributed ranks): loaded when they run
        return engine.listed_loaded(model_id)
    entry = engine.pool.get(model_id)
    if entry is None and "@" in model_id:  # an adapter (BASE@NAME): live on its loaded base
        base = engine.pool.get(model_id.split("@", 1)[0])
        return base is not None and any(a.ref.id == model_id for a in Adapters.live_on(base))
    return entry is not None and entry.loaded is not None
