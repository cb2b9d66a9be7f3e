"""One model's prefix cache in two tiers: RAM (hot, engine/prefix_cache) over disk (cold, engine/disk_cache).

A lookup takes the longer of the two matches; a disk match is read into RAM first, so the batch always starts
from a RAM copy. Entries go to disk when RAM evicts them, when they have stayed in RAM `write_delay` seconds
without being replaced by a longer one (so a crash loses little), and all at once when the model unloads.

When a model loads, its most recently used files (up to half the RAM tier) are read and checked on a prefetch
thread, and the model thread takes them into RAM at its next lookup: the first turn after a restart or a reload
finds its prefix in RAM instead of reading it while every running sequence waits. A lookup whose file is still
being prefetched waits for that read rather than reading the file twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from mlx_manager.engine import kv_file
from mlx_manager.engine.block_index import NO_TOKEN
from mlx_manager.engine.cache_identity import model_identity, model_key
from mlx_manager.engine.cache_support import CacheSupport, cache_support
from mlx_manager.engine.disk_cache import DiskCache, DiskEntry, DiskStore
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.prefix_cache import Entry, Match, PrefixCache

log = logging.getLogger(__name__)
# Before a model's batch loop starts (and for vision models, whose image prompts are not cached).
NOT_CACHED = CacheSupport("off", {}, "not cached")
# A lookup waits at most this long for the prefetch of its file (then reads it itself).
PREFETCH_WAIT_SECONDS = 30.0


def open_tiers(
    lm: LoadedModel, ram: PrefixCache, disk_dir: Path | None, disk_bytes: int, write_delay: float
) -> TieredCache:
    """The model's tiers, on its thread: what reuse its cache allows, and its files on disk when enabled."""
    support = cache_support(lm.model, lm.kv)
    disk = None
    if support.reuse != "off" and disk_dir is not None and disk_bytes > 0:
        try:
            identity = model_identity(lm.info.path, lm.dtype, lm.quantization_bits, support, ram.block_size, lm.kv)
            if identity["weights"]:  # no safetensors to fingerprint: a changed model could not be told apart
                disk = DiskStore.open(disk_dir, disk_bytes).model(model_key(identity), identity, ram.block_size)
                disk.flush(60.0)  # writes queued when this model last unloaded
        except OSError as exc:
            log.warning("No disk tier for the prefix cache of %s: %s", lm.info.id, exc)
    log.info(
        "Prefix cache for %s: %s%s",
        lm.info.id,
        support.reason,
        f"; disk tier {disk.folder} ({len(disk)} entries)" if disk is not None else "",
    )
    tiers = TieredCache(ram, disk, support, write_delay)
    tiers.prefetch(ram.max_bytes // 2)
    return tiers


class TieredCache:
    def __init__(self, ram: PrefixCache, disk: DiskCache | None, support: CacheSupport, write_delay: float) -> None:
        self.ram = ram
        self.disk = disk
        self.support = support
        self.write_delay = write_delay
        ram.on_evict = self._evicted
        self._ready: queue.SimpleQueue[tuple[DiskEntry, kv_file.Raw]] = queue.SimpleQueue()
        self._pending: dict[str, threading.Event] = {}  # files the prefetch has yet to read, by name
        self._closed = threading.Event()

    @property
    def enabled(self) -> bool:
        return self.support.reuse != "off" and self.ram.max_bytes > 0

    def peek(self, prompt: list[int], hashes: list[bytes]) -> int:
        if not self.enabled:
            return 0
        self._take_prefetched()
        ram = self.ram.peek(prompt, hashes)
        return max(ram, self.disk.peek(prompt, hashes)) if self.disk is not None else ram

    def lookup(self, prompt: list[int], hashes: list[bytes]) -> Match:
        if not self.enabled:
            return Match()
        self._take_prefetched()
        # Read a file only for at least a block more than RAM has.
        if self._disk_has_more(prompt, hashes):
            assert self.disk is not None
            best = self.disk.best(prompt, hashes)
            reading = self._pending.get(best.name) if best is not None else None
            if reading is not None and reading.wait(PREFETCH_WAIT_SECONDS):
                self._take_prefetched()
        if self._disk_has_more(prompt, hashes):
            assert self.disk is not None
            loaded = self.disk.load(prompt, hashes)
            if loaded is not None and self.ram.insert(*loaded, on_disk=True) is not None:
                return self.ram.lookup(prompt, hashes, tier="disk")
        return self.ram.lookup(prompt, hashes)

    def _disk_has_more(self, prompt: list[int], hashes: list[bytes]) -> bool:
        return (
            self.disk is not None
            and self.disk.peek(prompt, hashes) >= self.ram.peek(prompt, hashes) + self.ram.block_size
        )

    def prefetch(self, max_bytes: int) -> None:
        """Read the model's most recent files (up to `max_bytes`) on a thread of their own."""
        if self.disk is None or not self.enabled or max_bytes <= 0:
            return
        entries = self.disk.recent(max_bytes)
        if not entries:
            return
        self._pending = {e.name: threading.Event() for e in entries}
        threading.Thread(target=self._prefetch, args=(entries,), name="kv-disk-prefetch", daemon=True).start()

    def _prefetch(self, entries: list[DiskEntry]) -> None:
        assert self.disk is not None
        for entry in entries:
            try:
                if not self._closed.is_set():
                    raw = self.disk.read_raw(entry, prefetch=True)
                    if raw is not None:
                        self._ready.put((entry, raw))
            except Exception:  # a failing disk costs the prefetch, never the model
                log.exception("Prefetching %s failed", entry.name)
            finally:
                self._pending[entry.name].set()

    def _take_prefetched(self) -> None:
        """On the model thread: prefetched files into RAM (MLX arrays are made here), unless RAM covers them."""
        while True:
            try:
                entry, raw = self._ready.get_nowait()
            except queue.Empty:
                return
            tokens = list(entry.tokens)
            if self.ram.peek([*tokens, NO_TOKEN]) >= len(tokens):
                continue
            try:
                _, cache = kv_file.build(raw)
            except kv_file.UnreadableFile as exc:
                log.warning("Ignoring prefetched KV cache file %s: %s", entry.name, exc)
                continue
            self.ram.insert(tokens, cache, on_disk=True, prefetched=True)

    def store(self, tokens: list[int], cache: list[Any]) -> None:
        if not self.enabled:
            return
        entry = self.ram.insert(tokens, cache)
        if entry is not None and self.disk is not None:
            self._write(entry, self.write_delay, lambda: self.ram.holds(entry))

    def unload(self) -> None:
        """The model is unloading: queue every RAM entry the disk lacks. The writes hold only these arrays, so
        the weights are freed meanwhile; a shutdown waits for them (DiskStore.drain_all)."""
        self._closed.set()
        if self.disk is None:
            return
        for entry in self.ram.entries():
            if not entry.on_disk:
                self._write(entry, 0.0, lambda: True)

    def _evicted(self, entry: Entry) -> None:
        if self.disk is not None and not entry.on_disk:
            self._write(entry, 0.0, lambda: True)

    def _write(self, entry: Entry, delay: float, wanted: Any) -> None:
        assert self.disk is not None

        def written() -> None:
            entry.on_disk = True

        try:
            self.disk.put(entry.tokens, entry.cache, entry.trimmable, delay, wanted, written)
        except (TypeError, KeyError) as exc:  # a state kv_file cannot hold: it stays in RAM only
            log.debug("Not writing a KV cache entry to disk: %s", exc)
