"""How a model's cache can be reused, read from the layer caches mlx-lm makes for it.

Plain attention KV can be cut at any position, so any cached prefix is reused. Sliding-window (rotating) and
recurrent (SSM, linear attention: ArraysCache) layers keep a state that cannot be cut back once past their
window, so they are reused only from a state stored at exactly the matched position (the scheduler publishes
prefills at block boundaries for them). Anything else is not cached: never a wrong answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from mlx_manager.engine.kv_file import LAYER_CLASSES
from mlx_manager.engine.kv_quant import make_cache
from mlx_manager.engine.types import FLOAT_KV, KVSetting

Reuse = Literal["any-prefix", "exact", "off"]


@dataclass(frozen=True)
class CacheSupport:
    reuse: Reuse
    layers: dict[str, int]  # layer cache class -> how many layers use it
    reason: str
    # Sliding windows (rotating layers), part of what makes a stored cache fit this model.
    windows: tuple[int, ...] = ()

    @property
    def trimmable(self) -> bool:
        return self.reuse == "any-prefix"


def cache_support(model: Any, kv: KVSetting = FLOAT_KV) -> CacheSupport:
    caches = make_cache(model, kv)
    layers = dict(Counter(type(c).__name__ for c in caches))
    windows = tuple(int(getattr(c, "max_size", 0) or 0) for c in caches if type(c).__name__ == "RotatingKVCache")
    if set(layers) <= {"KVCache", "QuantizedKV"}:
        kind = f"{kv.describe()} quantized attention KV" if "QuantizedKV" in layers else "plain attention KV"
        return CacheSupport("any-prefix", layers, f"{kind}: any cached prefix is reused")
    unknown = sorted(set(layers) - set(LAYER_CLASSES))
    if unknown:
        return CacheSupport("off", layers, f"not cached: {', '.join(unknown)} layers cannot be stored and restored")
    kinds = " and ".join(k for k in ("RotatingKVCache", "ArraysCache") if k in layers)
    return CacheSupport(
        "exact",
        layers,
        f"{kinds} layers (sliding-window / recurrent state): reused only from states stored at exactly the matched"
        " position",
        windows,
    )
