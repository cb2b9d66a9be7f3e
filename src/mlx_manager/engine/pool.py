"""The model pool: load on demand, one load per model at a time, LRU eviction, pins and idle TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil

from mlx_manager.config import default
from mlx_manager.engine.audio.model import SpeechModel
from mlx_manager.engine.audio.tts import TextToSpeechModel
from mlx_manager.engine.cpu_dtype import CpuDtype, WeightPlan, plan_weights
from mlx_manager.engine.embeddings.model import EmbeddingModel
from mlx_manager.engine.errors import KVSettingConflict, MemoryBudgetError, QueueFullError
from mlx_manager.engine.kv_quant import with_kv
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig
from mlx_manager.engine.types import FLOAT_KV, KVSetting, ModelInfo
from mlx_manager.engine.vision.scheduler import scheduler_for

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelRunner:
    """One thread per model: it loads the model and runs its work in order."""

    def __init__(self, model_id: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"mlx-{model_id[-24:]}")

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """A request's work on the model's thread, in arrival order (embeddings, speech: no scheduler)."""
        try:
            future = self.submit(fn, *args)
        except RuntimeError as exc:  # the runner was shut down between acquire and submit
            raise QueueFullError("The model is being unloaded; retry shortly.", retry_after=1) from exc
        return await future

    def shutdown(self, final: Callable[[], None] | None = None) -> None:
        """Stop taking work; queued work still runs, then `final` (on the same thread)."""
        if final is not None:
            self._executor.submit(final)
        self._executor.shutdown(wait=False, cancel_futures=False)

    def join(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass
class PoolEntry:
    info: ModelInfo
    runner: ModelRunner
    # How the weights are loaded (as stored, or float32 on CPU), the KV setting, what they are expected to take.
    plan: WeightPlan
    # An embedding or speech model has no scheduler: its requests run one by one on the runner.
    loaded: LoadedModel | EmbeddingModel | SpeechModel | TextToSpeechModel | None = None
    ready: asyncio.Future[LoadedModel | EmbeddingModel | SpeechModel | TextToSpeechModel] | None = None
    pinned: bool = False
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    loaded_at: float = 0.0
    load_seconds: float = 0.0
    scheduler: Scheduler | None = None
    # The KV setting this load was asked for (the server's default or the admin's), kept while it is loaded.
    kv_asked: KVSetting = FLOAT_KV
    # A client's keep_alive (Ollama's): seconds it stays once idle instead of the pool's idle TTL (0: unloaded as
    # soon as it is idle); None: the pool's TTL. `kept_pinned`: the pin came from a negative keep_alive.
    keep_alive: float | None = None
    kept_pinned: bool = False

    @property
    def memory_bytes(self) -> int:
        if self.loaded is None:
            return self.plan.weight_bytes
        adapters = getattr(self.loaded, "adapters", None)  # LoRA adapters cost their own weights
        return self.loaded.memory_bytes + (adapters.memory_bytes if adapters is not None else 0)


DEFAULT_CPU_DTYPE: CpuDtype = default("cpu_dtype")


@dataclass(frozen=True)
class PoolConfig:
    max_models: int
    memory_budget_bytes: int
    idle_ttl_seconds: float = default("idle_ttl_seconds")
    # How long a load waits for busy models to go idle before giving up.
    room_wait_seconds: float = default("room_wait_seconds")
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    # Memory the system must keep free after a load (the OS, other apps); a load that would cut into it is refused.
    reserve_bytes: int = default("memory_reserve_bytes")
    # Bytes the system can still give (psutil's "available"); a parameter so tests can play a fuller machine.
    free_memory: Callable[[], int] = field(default=lambda: int(psutil.virtual_memory().available))
    # On MLX's CPU backend: run quantized / half-precision checkpoints in float32 (engine/cpu_dtype).
    cpu_dtype: CpuDtype = DEFAULT_CPU_DTYPE
    # The KV cache of models loaded without a setting of their own (kv_bits / kv_group_size, engine/kv_quant).
    kv: KVSetting = FLOAT_KV


Loader = Callable[[ModelInfo, WeightPlan], LoadedModel | EmbeddingModel | SpeechModel | TextToSpeechModel]
Releaser = Callable[[], None]


class ModelPool:
    def __init__(self, config: PoolConfig, loader: Loader, release: Releaser) -> None:
        self.config = config
        self._loader = loader
        self._release = release
        self._entries: dict[str, PoolEntry] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition(self._lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.loads = 0  # how many loads actually ran, for tests and metrics

    def entries(self) -> list[PoolEntry]:
        return list(self._entries.values())

    def get(self, model_id: str) -> PoolEntry | None:
        return self._entries.get(model_id)

    async def acquire(
        self, info: ModelInfo, *, pin: bool = False, kv: KVSetting | None = None, kv_strict: bool = True
    ) -> PoolEntry:
        """Return the loaded entry with one more active user; concurrent callers share one load. `kv`: the KV
        setting to load it with (None: the server's); a model loaded with another one is a KVSettingConflict, or
        with `kv_strict` False is used as it is."""
        async with self._lock:
            entry = self._entries.get(info.id)
            if entry is not None and kv is not None and kv != entry.kv_asked and kv_strict:
                raise KVSettingConflict(
                    f"'{info.id}' is loaded with {entry.kv_asked.describe()} KV, not {kv.describe()}; unload it"
                    " first to load it with another KV setting.",
                    param="kv_bits",
                )
            if entry is None:
                asked = kv if kv is not None else self.config.kv
                plan = await self._make_room(info, asked)
                entry = PoolEntry(info=info, runner=ModelRunner(info.id), plan=plan, pinned=pin, kv_asked=asked)
                entry.ready = asyncio.get_running_loop().create_future()
                self._entries[info.id] = entry
                self._spawn(self._load(entry))
            entry.pinned = entry.pinned or pin
            entry.active += 1
            entry.last_used = time.monotonic()
        assert entry.ready is not None
        try:
            await asyncio.shield(entry.ready)
        except BaseException:
            self.release(entry)
            raise
        return entry

    def release(self, entry: PoolEntry) -> None:
        entry.active = max(entry.active - 1, 0)
        entry.last_used = time.monotonic()
        if entry.active == 0:
            if entry.keep_alive == 0:
                self._spawn(self._expire(entry))
            self._spawn(self._notify())

    async def keep_alive(self, model_id: str, seconds: float) -> None:
        """A client's keep_alive for a loaded model: negative keeps it until unloaded (a pin), 0 unloads it once
        idle, else it stays that long once idle. A later keep_alive replaces it; an admin's pin stays."""
        async with self._lock:
            entry = self._entries.get(model_id)
            if entry is None or entry.loaded is None:
                return
            if seconds < 0:
                if not entry.pinned:
                    entry.pinned = entry.kept_pinned = True
                entry.keep_alive = None
                return
            if entry.kept_pinned:
                entry.pinned = entry.kept_pinned = False
            entry.keep_alive = seconds
            if seconds == 0 and entry.active == 0 and not entry.pinned:
                self._evict(entry, reason="keep_alive 0")

    def expires_in(self, entry: PoolEntry) -> float | None:
        """Seconds until the idle TTL (or the model's keep_alive) unloads it; None: not by time (pinned, no TTL)."""
        ttl = self.config.idle_ttl_seconds if entry.keep_alive is None else entry.keep_alive
        if entry.pinned or (entry.keep_alive is None and ttl <= 0):
            return None
        idle = 0.0 if entry.active else time.monotonic() - entry.last_used
        return max(ttl - idle, 0.0)

    async def _expire(self, entry: PoolEntry) -> None:
        async with self._lock:
            if self._entries.get(entry.info.id) is entry and entry.loaded and entry.active == 0 and not entry.pinned:
                self._evict(entry, reason=f"keep_alive {entry.keep_alive:g}s")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _load(self, entry: PoolEntry) -> None:
        assert entry.ready is not None
        start = time.monotonic()
        try:
            loaded = await entry.runner.submit(self._loader, entry.info, entry.plan)
        except BaseException as exc:
            self._entries.pop(entry.info.id, None)
            entry.runner.shutdown()
            entry.ready.set_exception(exc)
            entry.ready.exception()  # mark retrieved: waiters may all have gone
            await self._notify()
            return
        self.loads += 1
        entry.loaded = loaded
        if isinstance(loaded, LoadedModel):
            # The batch loop then owns the model's thread until the model is evicted.
            entry.scheduler = scheduler_for(loaded, self.config.scheduler)  # a vision model's own (engine/vision)
            entry.runner.submit(entry.scheduler.run)
        entry.loaded_at = time.time()
        entry.load_seconds = time.monotonic() - start
        entry.ready.set_result(loaded)

    async def _make_room(self, info: ModelInfo, kv: KVSetting) -> WeightPlan:
        """Evict before loading, so two models never overlap past the budget, then check the machine has room."""
        plan = plan_weights(info, self.config.cpu_dtype, lambda p: self._fits_now(info, with_kv(info, p, kv)))
        plan = with_kv(info, plan, kv)
        await self._fit_budget(info, plan.weight_bytes)
        self._fit_free_memory(info, plan)
        return plan

    def _fits_now(self, info: ModelInfo, plan: WeightPlan) -> bool:
        """Whether a load fits without waiting: next to the busy and pinned models in the budget, and in free
        memory once idle models are unloaded."""
        idle = [e for e in self._entries.values() if not e.pinned and e.loaded is not None and e.active == 0]
        kept = sum(e.memory_bytes for e in self._entries.values()) - sum(e.memory_bytes for e in idle)
        room = self.config.free_memory() + sum(e.memory_bytes for e in idle) - self.config.reserve_bytes
        return kept + plan.weight_bytes <= self.config.memory_budget_bytes and _projected(info, plan) <= room

    def _fit_free_memory(self, info: ModelInfo, plan: WeightPlan) -> None:
        """Project weights + one full-context KV cache against free memory; evict idle models until it fits, or
        refuse with the numbers. An out-of-memory abort would take every other request down with it."""
        context = _gate_context(info)
        need = _projected(info, plan)
        freed = 0
        while True:
            room = self.config.free_memory() + freed - self.config.reserve_bytes
            if need <= room:
                return
            victim = self._pick_victim()
            if victim is None:
                raise MemoryBudgetError(
                    f"Cannot load '{info.id}': it needs about {need / 1e9:.2f} GB (weights"
                    f" {plan.weight_bytes / 1e9:.2f} GB + {plan.kv.describe()} KV for {context} tokens), but only"
                    f" {max(room, 0) / 1e9:.2f} GB is free after keeping {self.config.reserve_bytes / 1e9:.2f} GB for"
                    " the system (memory_reserve_bytes), and no idle model is left to unload."
                )
            freed += victim.memory_bytes  # released on its thread shortly; count it now
            self._evict(victim, reason=f"to free memory for {info.id}")

    async def _fit_budget(self, info: ModelInfo, size: int) -> None:
        budget = self.config.memory_budget_bytes
        if size > budget:
            raise MemoryBudgetError(
                f"Model '{info.id}' needs about {size / 1e9:.2f} GB but the memory budget is"
                f" {budget / 1e9:.2f} GB. Raise memory_budget_fraction / memory_budget_bytes or use a"
                " smaller (quantized) model."
            )
        deadline = time.monotonic() + self.config.room_wait_seconds
        while True:
            used = sum(e.memory_bytes for e in self._entries.values())
            if len(self._entries) < self.config.max_models and used + size <= budget:
                return
            victim = self._pick_victim()
            if victim is not None:
                self._evict(victim, reason="to make room for " + info.id)
                continue
            problem = (
                f"Cannot load '{info.id}': {len(self._entries)} models use {used / 1e9:.2f} GB of the"
                f" {budget / 1e9:.2f} GB budget (max_models={self.config.max_models})"
            )
            if all(e.pinned for e in self._entries.values()):
                raise MemoryBudgetError(f"{problem} and all are pinned. Unpin or unload a model first.")
            # Busy or loading models are never evicted (that would hold two copies); wait for one to go idle.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MemoryBudgetError(f"{problem} and stayed busy for {self.config.room_wait_seconds:.0f}s.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _pick_victim(self) -> PoolEntry | None:
        """The least recently used model that is loaded, idle and not pinned."""
        idle = [e for e in self._entries.values() if not e.pinned and e.loaded is not None and e.active == 0]
        return min(idle, key=lambda e: e.last_used, default=None)

    def _evict(self, entry: PoolEntry, reason: str) -> None:
        self._entries.pop(entry.info.id, None)
        log.info("Unloading %s (%s)", entry.info.id, reason)
        entry.loaded = None
        if entry.scheduler is not None:
            entry.scheduler.stop()  # accepted requests still finish
        # Memory is released on the model's thread once its batch loop has ended.
        entry.runner.shutdown(final=self._release)

    async def unload(self, model_id: str) -> bool:
        async with self._lock:
            entry = self._entries.get(model_id)
            if entry is None or entry.loaded is None:
                return False
            self._evict(entry, reason="requested")
            return True

    async def unload_idle(self) -> list[str]:
        unloaded: list[str] = []
        async with self._lock:
            for entry in list(self._entries.values()):
                left = self.expires_in(entry)
                if entry.loaded and entry.active == 0 and left is not None and left <= 0:
                    ttl = self.config.idle_ttl_seconds if entry.keep_alive is None else entry.keep_alive
                    self._evict(entry, reason=f"idle for {ttl:.0f}s")
                    unloaded.append(entry.info.id)
        return unloaded

    async def run_idle_reaper(self) -> None:
        """Unload idle models; reads the current config each round, so a changed TTL applies at once."""
        while True:
            ttls = [self.config.idle_ttl_seconds, *(e.keep_alive or 0.0 for e in self._entries.values())]
            ttl = min((t for t in ttls if t > 0), default=0.0)
            await asyncio.sleep(min(max(ttl / 2, 0.1), 10.0) if ttl > 0 else 1.0)
            with contextlib.suppress(Exception):
                await self.unload_idle()

    async def reconfigure(self, config: PoolConfig) -> list[str]:
        """Use new limits now: evict idle models (least recently used first) until the pool fits them, and wake
        loads waiting for room. Busy, loading and pinned models stay; later loads make room as usual."""
        evicted: list[str] = []
        async with self._lock:
            self.config = config
            while (
                len(self._entries) > config.max_models
                or sum(e.memory_bytes for e in self._entries.values()) > config.memory_budget_bytes
            ):
                victim = self._pick_victim()
                if victim is None:
                    break
                self._evict(victim, reason="the pool settings changed")
                evicted.append(victim.info.id)
            self._changed.notify_all()
        return evicted

    async def close(self) -> None:
        """Cancel what is running, unload everything and wait for the model threads to end."""
        async with self._lock:
            entries = list(self._entries.values())
            for entry in entries:
                if entry.scheduler is not None:
                    entry.scheduler.cancel_all()
                self._evict(entry, reason="shutdown")
        for entry in entries:
            await asyncio.to_thread(entry.runner.join)


def _gate_context(info: ModelInfo) -> int:
    return min(info.context_length or 4096, 32768)


def _projected(info: ModelInfo, plan: WeightPlan) -> int:
    """What the memory gate expects a load to take: weights + 10% and one full-context KV cache."""
    return int(plan.weight_bytes * 1.1) + plan.kv_bytes_per_token * _gate_context(info)
