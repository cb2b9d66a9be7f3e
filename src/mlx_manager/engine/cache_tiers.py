"""One model's prefix cache in two tiers: RAM (hot, engine/prefix_cache) over disk (cold, engine/disk_cache).

A lookup takes the longer of the two matches; a disk match is read into RAM first, so the batch always starts
from a RAM copy. Entries go to disk when RAM evicts them, when they have stayed in RAM `write_delay` seconds
without being replaced by a longer one (so a crash loses little), and all at once when the model unloads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlx_manager.engine.cache_identity import model_identity, model_key
from mlx_manager.engine.cache_support import CacheSupport, cache_support
from mlx_manager.engine.disk_cache import DiskCache, DiskStore
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.prefix_cache import Entry, Match, PrefixCache

log = logging.getLogger(__name__)
# Before a model's batch loop starts (and for vision models, whose image prompts are not cached).
NOT_CACHED = CacheSupport("off", {}, "not cached")


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
    return TieredCache(ram, disk, support, write_delay)


class TieredCache:
    def __init__(self, ram: PrefixCache, disk: DiskCache | None, support: CacheSupport, write_delay: float) -> None:
        self.ram = ram
        self.disk = disk
        self.support = support
        self.write_delay = write_delay
        ram.on_evict = self._evicted

    @property
    def enabled(self) -> bool:
        return self.support.reuse != "off" and self.ram.max_bytes > 0

    def peek(self, prompt: list[int], hashes: list[bytes]) -> int:
        if not self.enabled:
            return 0
        ram = self.ram.peek(prompt, hashes)
        return max(ram, self.disk.peek(prompt, hashes)) if self.disk is not None else ram

    def lookup(self, prompt: list[int], hashes: list[bytes]) -> Match:
        if not self.enabled:
            return Match()
        # Read a file only for at least a block more than RAM has.
        if (
            self.disk is not None
            and self.disk.peek(prompt, hashes) >= self.ram.peek(prompt, hashes) + self.ram.block_size
        ):
            loaded = self.disk.load(prompt, hashes)
            if loaded is not None and self.ram.insert(*loaded, on_disk=True) is not None:
                return self.ram.lookup(prompt, hashes, tier="disk")
        return self.ram.lookup(prompt, hashes)

    def store(self, tokens: list[int], cache: list[Any]) -> None:
        if not self.enabled:
            return
        entry = self.ram.insert(tokens, cache)
        if entry is not None and self.disk is not None:
            self._write(entry, self.write_delay, lambda: self.ram.holds(entry))

    def unload(self) -> None:
        """The model is unloading: queue every RAM entry the disk lacks. The writes hold only these arrays, so
        the weights are freed meanwhile; a shutdown waits for them (DiskStore.drain_all)."""
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
