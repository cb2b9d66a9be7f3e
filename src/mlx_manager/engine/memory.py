"""The memory ceiling: the pool's budget applied to MLX, and a monitor that sheds load before the machine swaps.

While requests run, the monitor reads MLX's active and cache memory and the system's available memory. Past the
high mark (of the budget, or the system's reserve) it frees MLX's buffer cache and trims the prefix caches first;
if that is not enough, new requests are refused with a 503 (MemoryPressureError) until usage is back under the low
mark. Running sequences go on: ending them would lose work the client already waited for.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import mlx.core as mx
import psutil

log = logging.getLogger(__name__)


class Trimmable(Protocol):
    """A cache the monitor can shrink: prefix caches, a vision model's image features (engine/vision/features)."""

    @property
    def bytes(self) -> int: ...

    def trim(self, max_bytes: int) -> int:
        """Drop least recently used entries until at most `max_bytes` remain; returns the bytes dropped."""
        ...


@dataclass(frozen=True)
class MemoryReading:
    active: int  # bytes MLX's arrays hold
    cache: int  # bytes MLX keeps in its buffer cache for reuse
    available: int  # what the system can still give without swapping (psutil's "available")

    @property
    def used(self) -> int:
        return self.active + self.cache


def read_memory() -> MemoryReading:
    return MemoryReading(mx.get_active_memory(), mx.get_cache_memory(), int(psutil.virtual_memory().available))


def apply_limit(budget: int) -> None:
    """MLX's own limit at the budget; on a Mac, also the wired (never paged out) limit, capped by what Metal
    recommends."""
    mx.set_memory_limit(budget)
    if platform.system() == "Darwin" and mx.metal.is_available():
        recommended = int(mx.device_info().get("max_recommended_working_set_size", budget))
        mx.set_wired_limit(min(budget, recommended))


@dataclass
class MemoryStats:
    trims: int = 0  # rounds that trimmed the prefix caches
    bytes_trimmed: int = 0
    shed: int = 0  # requests refused while shedding
    shedding_since: float | None = None
    last: MemoryReading = field(default_factory=lambda: MemoryReading(0, 0, 0))


class MemoryGuard:
    """`budget` and `reserve` are read each round (live settings change them); `read` and `clear_cache` are
    parameters so a test can play a fuller machine."""

    def __init__(
        self,
        budget: Callable[[], int],
        reserve: Callable[[], int],
        read: Callable[[], MemoryReading] = read_memory,
        clear_cache: Callable[[], None] = mx.clear_cache,
        high: float = 0.9,
        low: float = 0.8,
        interval: float = 0.1,
    ) -> None:
        self.budget = budget
        self.reserve = reserve
        self.read = read
        self.clear_cache = clear_cache
        self.high = high
        self.low = low
        self.interval = interval
        self.shedding = False
        self.stats = MemoryStats()
        self._applied: int | None = None

    def apply(self) -> None:
        budget = self.budget()
        if budget != self._applied:
            apply_limit(budget)
            self._applied = budget

    def _over(self, reading: MemoryReading, mark: float) -> bool:
        return reading.used > mark * self.budget() or reading.available < self.reserve()

    def check(self, caches: list[Trimmable], busy: bool = True) -> None:
        """One round: past the mark (the high one, or the low one while shedding) free MLX's buffer cache and trim
        the prefix caches first, then shed; stop shedding under the low mark, or once nothing runs (refusing
        requests then frees nothing)."""
        reading = self.stats.last = self.read()
        mark = self.low if self.shedding else self.high
        if self._over(reading, mark):
            reading = self._relieve(reading, caches)
            if self._over(reading, mark) and busy and not self.shedding:
                self.shedding = True
                self.stats.shedding_since = asyncio.get_running_loop().time()
                log.warning(
                    "Memory pressure: refusing new requests (MLX %.0f MB of a %.0f MB budget, %.0f MB free)",
                    reading.used / 1e6, self.budget() / 1e6, reading.available / 1e6,
                )  # fmt: skip
        if self.shedding and (not self._over(reading, self.low) or not busy):
            self.end_shedding()

    def end_shedding(self) -> None:
        """Take requests again: memory is back under the low mark, or nothing runs (refusing frees nothing)."""
        self.shedding = False
        self.stats.shedding_since = None
        log.info("Memory pressure over: taking new requests again (MLX %.0f MB)", self.stats.last.used / 1e6)

    def _relieve(self, reading: MemoryReading, caches: list[Trimmable]) -> MemoryReading:
        """MLX's buffer cache, then half of each prefix cache; returns a new reading when anything was freed."""
        if reading.cache:
            self.clear_cache()
        freed = sum(cache.trim(cache.bytes // 2) for cache in caches if cache.bytes)
        if freed:
            self.stats.trims += 1
            self.stats.bytes_trimmed += freed
            log.warning(
                "Memory pressure (MLX %.0f MB of a %.0f MB budget, %.0f MB free): trimmed %.1f MB of prefix cache",
                reading.used / 1e6, self.budget() / 1e6, reading.available / 1e6, freed / 1e6,
            )  # fmt: skip
        if not (freed or reading.cache):
            return reading
        reading = self.stats.last = self.read()
        return reading

    async def run(self, busy: Callable[[], bool], caches: Callable[[], list[Trimmable]]) -> None:
        """Check while requests run (or while shedding, to see it end); reads are cheap, so every `interval`."""
        while True:
            await asyncio.sleep(self.interval)
            running = busy()
            if running or self.shedding:
                try:
                    self.check(caches(), running)
                except Exception:  # a failed read must not end the monitor
                    log.exception("Memory check failed")
