"""Prefix cache over real KV tensors, the hot (RAM) tier: entries found by chained block hashes, ref-counted, LRU
under a byte budget.

An entry is the per-layer cache of a sequence plus the tokens it holds: a prompt's as soon as its prefill is
done, a cancelled sequence's, a finished one's. Every full block of `block_size` tokens gets a hash chained from
the previous block's (engine/block_index); a lookup finds the entry sharing the most blocks, then extends the
match token by token inside it. Caches that cannot be trimmed (sliding-window or recurrent layers past their
window) are only reused by prompts that start with all of their tokens.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from mlx.utils import tree_map
from mlx_lm.models.cache import KVCache as KVCacheLayer
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

from mlx_manager.engine.block_index import BlockIndex, block_hashes, common_prefix

log = logging.getLogger(__name__)

KVCache = list[Any]
__all__ = [
    "CacheStats",
    "Entry",
    "KVCache",
    "Match",
    "PrefixCache",
    "block_hashes",
    "cache_nbytes",
    "compact",
    "state_arrays",
]


@dataclass(eq=False)
class Entry:
    tokens: tuple[int, ...]
    cache: KVCache
    nbytes: int
    hashes: list[bytes]
    trimmable: bool = True
    refs: int = 0
    # The cold tier holds these tokens too (read from it, or written to it): no need to write it again.
    on_disk: bool = False
    # Read from the cold tier ahead of any request (prefetched at model load): its first hit counts as a disk hit.
    prefetched: bool = False


@dataclass
class Match:
    """A reusable prefix: `cache` holds KV for `tokens[:length]`; None when nothing matched."""

    length: int = 0
    cache: KVCache | None = None
    diverged_at: int | None = None  # first prompt position that differs from the best entry
    tier: str | None = None  # "ram" or "disk": where the reused tokens came from


@dataclass
class CacheStats:
    lookups: int = 0
    hits: int = 0
    tokens_requested: int = 0
    tokens_reused: int = 0
    evictions: int = 0
    hits_by_tier: dict[str, int] = field(default_factory=lambda: {"ram": 0, "disk": 0})
    tokens_by_tier: dict[str, int] = field(default_factory=lambda: {"ram": 0, "disk": 0})
    recent: list[dict[str, Any]] = field(default_factory=list)


def compact(cache: KVCache) -> KVCache:
    """Copy each layer's state out of the batch buffers it was sliced from; a slice would pin the whole batch."""
    for layer in cache:
        if isinstance(layer, KVCacheLayer) and layer.keys is not None:
            keys, values = layer.keys_and_values()  # drops the preallocated room past `offset`
            layer.keys, layer.values = mx.contiguous(keys), mx.contiguous(values)
        else:  # rotating KV, recurrent state (nested lists of arrays), scalars
            layer.state = tree_map(lambda x: mx.contiguous(x) if isinstance(x, mx.array) else x, layer.state)
    mx.eval(list(state_arrays(cache)))
    return cache


def state_arrays(cache: KVCache) -> Iterator[mx.array]:
    """Every array in the layers' states (recurrent layers nest them in lists)."""
    stack: list[Any] = [layer.state for layer in cache]
    while stack:
        item = stack.pop()
        if isinstance(item, mx.array):
            yield item
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def cache_nbytes(cache: KVCache) -> int:
    return sum(int(getattr(c, "nbytes", 0)) for c in cache)


class PrefixCache:
    def __init__(
        self,
        max_bytes: int,
        block_size: int = 32,
        keep_recent: int = 32,
        on_evict: Callable[[Entry], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.block_size = block_size
        self.keep_recent = keep_recent
        # Sees each entry pushed out by the byte budget (the cold tier writes it to disk).
        self.on_evict = on_evict
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # LRU order, keyed by id(entry)
        self._index: BlockIndex[Entry] = BlockIndex(block_size)
        self._lock = threading.Lock()
        self.bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def holds(self, entry: Entry) -> bool:
        with self._lock:
            return self._entries.get(id(entry)) is entry

    def peek(self, prompt: list[int], hashes: list[bytes] | None = None) -> int:
        """How many prompt tokens a lookup would reuse now, without copying anything or counting a lookup."""
        with self._lock:
            _, length, _ = self._index.best(prompt, hashes or block_hashes(prompt, self.block_size))
        return length

    def lookup(self, prompt: list[int], hashes: list[bytes] | None = None, tier: str = "ram") -> Match:
        """Longest cached prefix of `prompt` (at most len(prompt) - 1, so one token is left to compute). `tier`
        names where the entry came from, for the stats (a disk read has just put it here)."""
        with self._lock:
            self.stats.lookups += 1
            self.stats.tokens_requested += len(prompt)
            entry, length, diverged = self._index.best(prompt, hashes or block_hashes(prompt, self.block_size))
            if entry is None:
                if diverged is None:
                    diverged = self._divergence_in_first_block(prompt)
                self._record(len(prompt), 0, diverged, None)
                return Match(diverged_at=diverged)
            entry.refs += 1
            self._entries.move_to_end(id(entry))
            if entry.prefetched:
                tier, entry.prefetched = "disk", False
        try:
            cache = self._fork(entry, length)
        finally:
            with self._lock:
                entry.refs -= 1
        with self._lock:
            if cache is None:
                self._record(len(prompt), 0, diverged, None)
                return Match(diverged_at=diverged)
            self.stats.hits += 1
            self.stats.tokens_reused += length
            self.stats.hits_by_tier[tier] = self.stats.hits_by_tier.get(tier, 0) + 1
            self.stats.tokens_by_tier[tier] = self.stats.tokens_by_tier.get(tier, 0) + length
            self._record(len(prompt), length, diverged, tier)
        return Match(length=length, cache=cache, diverged_at=diverged, tier=tier)

    def _fork(self, entry: Entry, length: int) -> KVCache | None:
        # The batch writes into the caches it is given, so a hit gets its own copy trimmed to the match.
        cache = copy.deepcopy(entry.cache)
        extra = len(entry.tokens) - length
        if extra == 0:
            return cache
        if not can_trim_prompt_cache(cache):
            return None
        trim_prompt_cache(cache, extra)
        return cache

    def insert(
        self, tokens: list[int], cache: KVCache, on_disk: bool = False, prefetched: bool = False
    ) -> Entry | None:
        """Keep the KV of `tokens` (compacted first). Trimmable entries whose blocks are all covered by a longer
        one are dropped; returns the new entry, or None when it holds no full block or exceeds the budget."""
        hashes = block_hashes(tokens, self.block_size)
        if not hashes or self.max_bytes <= 0:
            return None
        cache = compact(cache)
        nbytes = cache_nbytes(cache)
        if nbytes > self.max_bytes:
            return None
        trimmable = can_trim_prompt_cache(cache)
        entry = Entry(tuple(tokens), cache, nbytes, hashes, trimmable, on_disk=on_disk, prefetched=prefetched)
        with self._lock:
            for old in self._index.add(entry):
                self._drop(old)
            self._entries[id(entry)] = entry
            self.bytes += nbytes
            evicted = self._evict()
        for victim in evicted:
            if self.on_evict is not None:
                self.on_evict(victim)
        return entry

    def trim(self, max_bytes: int) -> int:
        """Memory pressure (engine/memory): drop least recently used entries not in use until at most `max_bytes`
        remain (each seen by on_evict, so the disk tier keeps it); returns the bytes dropped."""
        with self._lock:
            before = self.bytes
            evicted = self._evict(max_bytes)
        for victim in evicted:
            if self.on_evict is not None:
                self.on_evict(victim)
        return before - self.bytes

    def _evict(self, max_bytes: int | None = None) -> list[Entry]:
        limit = self.max_bytes if max_bytes is None else max_bytes
        evicted: list[Entry] = []
        while self.bytes > limit:
            victim = next((e for e in self._entries.values() if e.refs == 0), None)
            if victim is None:
                break
            self._drop(victim)
            self.stats.evictions += 1
            evicted.append(victim)
        return evicted

    def _drop(self, entry: Entry) -> None:
        if self._entries.pop(id(entry), None) is None:
            return
        self.bytes -= entry.nbytes
        self._index.remove(entry)

    def clear(self) -> None:
        with self._lock:
            for entry in list(self._entries.values()):
                self._drop(entry)

    def _divergence_in_first_block(self, prompt: list[int]) -> int | None:
        """On a miss, where the prompt leaves the most similar cached sequence (shows volatile prompt heads)."""
        head = prompt[: self.block_size]
        return max((common_prefix(e.tokens[: self.block_size], head) for e in self._entries.values()), default=None)

    def _record(self, prompt_len: int, reused: int, diverged: int | None, tier: str | None) -> None:
        self.stats.recent.append(
            {"prompt_tokens": prompt_len, "reused_tokens": reused, "diverged_at": diverged, "tier": tier}
        )
        del self.stats.recent[: -self.keep_recent]
