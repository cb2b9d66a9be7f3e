"""What every model load shares: its time and MLX memory, and one error shape for whatever the files raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import mlx.core as mx

from mlx_manager.engine.errors import ModelLoadError
from mlx_manager.engine.types import ModelInfo


@dataclass
class LoadMeter:
    start: float = field(default_factory=time.perf_counter)
    before: int = field(default_factory=mx.get_active_memory)

    def memory(self) -> int:
        """MLX memory the load took so far (active memory can drop while loading: never below 0)."""
        return max(mx.get_active_memory() - self.before, 0)

    def seconds(self) -> float:
        return time.perf_counter() - self.start


@contextmanager
def loading(info: ModelInfo, kind: str = "model") -> Iterator[LoadMeter]:
    """Runs on the model's thread; bad files surface in many forms, all mean the same to the caller."""
    meter = LoadMeter()
    try:
        yield meter
    except Exception as exc:
        raise ModelLoadError(f"Could not load {kind} '{info.id}' from {info.path}: {exc}") from exc
