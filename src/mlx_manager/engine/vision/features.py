"""Encoded image features reused across requests: a content-hash LRU cache under a byte budget.

The key is a hash of what the vision tower is given (the processor's pixel values, with the grid and any other
array or setting passed with them), so the same image bytes under the same processor settings hit, and a change
to either misses. The cache sits in front of the model's vision tower, which every mlx-vlm architecture calls
from `get_input_embeddings`, so no model code changes; a request's images are encoded (and cached) together.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

import mlx.core as mx
import numpy as np


@dataclass
class FeatureStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0


def _arrays(value: Any) -> list[mx.array]:
    if isinstance(value, mx.array):
        return [value]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays(v)]
    return []


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, mx.array):
        if value.dtype == mx.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
            value = value.view(mx.uint16)
        data = np.asarray(value)
        h.update(f"{data.dtype}{data.shape}".encode())
        h.update(np.ascontiguousarray(data).tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(value, dict):
        for k in sorted(value):
            h.update(str(k).encode())
            _feed(h, value[k])
    else:
        h.update(repr(value).encode())


def content_key(*args: Any, **kwargs: Any) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    _feed(h, list(args))
    _feed(h, kwargs)
    return h.digest()


class FeatureCache:
    """LRU of vision-tower outputs by content hash; entries over the budget are not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stats = FeatureStats()
        self._entries: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()  # the metrics read stats from the event loop

    def get(self, key: bytes) -> Any | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return found[0]

    def put(self, key: bytes, value: Any) -> None:
        nbytes = sum(a.nbytes for a in _arrays(value))
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.stats.bytes -= old[1]
            self._entries[key] = (value, nbytes)
            self.stats.bytes += nbytes
            while self.stats.bytes > self.max_bytes:
                _, (_, size) = self._entries.popitem(last=False)
                self.stats.bytes -= size
                self.stats.evictions += 1
            self.stats.entries = len(self._entries)

    @property
    def bytes(self) -> int:
        return self.stats.bytes

    def trim(self, max_bytes: int) -> int:
        """Memory pressure (engine/memory): drop the least recently used until at most `max_bytes` remain."""
        with self._lock:
            before = self.stats.bytes
            while self.stats.bytes > max_bytes and self._entries:
                _, (_, size) = self._entries.popitem(last=False)
                self.stats.bytes -= size
                self.stats.evictions += 1
            self.stats.entries = len(self._entries)
            return before - self.stats.bytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.stats.bytes = self.stats.entries = 0


def grid_split(pixel_values: Any, grid: Any) -> list[tuple[mx.array, mx.array]] | None:
    """Qwen-style inputs (patch rows of every image, one (t, h, w) grid row per image) split per image; None for
    one image or another layout."""
    if not isinstance(pixel_values, mx.array) or not isinstance(grid, mx.array):
        return None
    if grid.ndim != 2 or grid.shape[0] < 2 or grid.shape[1] != 3:
        return None
    sizes = [t * h * w for t, h, w in cast(list[list[int]], grid.tolist())]
    if sum(sizes) != pixel_values.shape[0]:
        return None
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(pixel_values[a : a + n], grid[i : i + 1]) for i, (a, n) in enumerate(zip(starts, sizes, strict=True))]


class CachedTower:
    """Stands in for `model.vision_tower`: same call, same attributes, outputs looked up by content first. Several
    images in one call (Qwen's layout) are looked up and encoded one by one, so an image is found again in any
    company (a chat that adds a picture sends the earlier ones again)."""

    def __init__(self, tower: Any, cache: FeatureCache) -> None:
        self.tower = tower
        self.cache = cache

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        parts = grid_split(*args[:2]) if len(args) >= 2 else None
        if parts is not None:
            outs = [self._one(pixels, grid, *args[2:], **kwargs) for pixels, grid in parts]
            if all(isinstance(o, mx.array) for o in outs):
                return mx.concatenate(outs, axis=0)
        return self._one(*args, **kwargs)

    def _one(self, *args: Any, **kwargs: Any) -> Any:
        key = content_key(*args, **kwargs)
        found = self.cache.get(key)
        if found is not None:
            return found
        out = self.tower(*args, **kwargs)
        mx.eval(_arrays(out))
        self.cache.put(key, out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tower, name)


def install(model: Any, cache: FeatureCache) -> bool:
    """Put the cache in front of the model's vision tower; False when the model has none under that name.
    Set on the instance, past mlx's Module.__setattr__, so the parameter tree still holds the real tower."""
    tower = model.get("vision_tower") if isinstance(model, dict) else None
    if tower is None or not callable(tower):
        return False
    object.__setattr__(model, "vision_tower", CachedTower(tower, cache))
    return True
