"""Prefix cache over real KV tensors: entries indexed by chained block hashes, ref-counted, LRU under a byte budget.

An entry is the per-layer KV cache of a finished sequence plus the tokens it holds. Every full block of
`block_size` tokens gets a hash chained from the previous block's, so a lookup walks the prompt's blocks until
one is missing, then extends the match token by token inside the entry it found.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache as KVCacheLayer
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

log = logging.getLogger(__name__)

KVCache = list[Any]


def block_hashes(tokens: list[int] | tuple[int, ...], block_size: int) -> list[bytes]:
    """Chained hashes of each full block: hash_i = H(hash_{i-1} || block_i)."""
    hashes: list[bytes] = []
    previous = b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = tokens[start : start + block_size]
        previous = hashlib.blake2b(previous + b"".join(t.to_bytes(4, "little") for t in block), digest_size=16).digest()
        hashes.append(previous)
    return hashes


@dataclass(eq=False)
class Entry:
    tokens: tuple[int, ...]
    cache: KVCache
    nbytes: int
    hashes: list[bytes]
    refs: int = 0


@dataclass
class Match:
    """A reusable prefix: `cache` holds KV for `tokens[:length]`; None when nothing matched."""

    length: int = 0
    cache: KVCache | None = None
    diverged_at: int | None = None  # first prompt position that differs from the best entry


@dataclass
class CacheStats:
    lookups: int = 0
    hits: int = 0
    tokens_requested: int = 0
    tokens_reused: int = 0
    evictions: int = 0
    recent: list[dict[str, int | None]] = field(default_factory=list)


def compact(cache: KVCache) -> KVCache:
    """Copy each layer's KV out of the batch buffers it was sliced from; a slice would pin the whole batch."""
    for layer in cache:
        if isinstance(layer, KVCacheLayer) and layer.keys is not None:
            keys, values = layer.keys_and_values()  # drops the preallocated room past `offset`
            layer.keys, layer.values = mx.contiguous(keys), mx.contiguous(values)
        else:
            layer.state = [mx.contiguous(x) if isinstance(x, mx.array) else x for x in layer.state]
    mx.eval([x for layer in cache for x in layer.state if isinstance(x, mx.array)])
    return cache


def cache_nbytes(cache: KVCache) -> int:
    return sum(int(getattr(c, "nbytes", 0)) for c in cache)


class PrefixCache:
    def __init__(self, max_bytes: int, block_size: int = 32, keep_recent: int = 32) -> None:
        self.max_bytes = max_bytes
        self.block_size = block_size
        self.keep_recent = keep_recent
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # LRU order, keyed by id(entry)
        self._by_hash: dict[bytes, Entry] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: list[int]) -> Match:
        """Longest cached prefix of `prompt` (at most len(prompt) - 1, so one token is left to compute)."""
        with self._lock:
            self.stats.lookups += 1
            self.stats.tokens_requested += len(prompt)
            entry: Entry | None = None
            for h in block_hashes(prompt, self.block_size):
                found = self._by_hash.get(h)
                if found is None:
                    break
                entry = found
            if entry is None:
                diverged = self._divergence_in_first_block(prompt)
                self._record(len(prompt), 0, diverged)
                return Match(diverged_at=diverged)
            entry.refs += 1
            self._entries.move_to_end(id(entry))
        try:
            same = _common_prefix(entry.tokens, prompt)
            length = min(same, len(prompt) - 1)
            cache = self._fork(entry, length)
        finally:
            with self._lock:
                entry.refs -= 1
        diverged = same if same < len(prompt) else None
        with self._lock:
            if cache is None:
                self._record(len(prompt), 0, diverged)
                return Match(diverged_at=diverged)
            self.stats.hits += 1
            self.stats.tokens_reused += length
            self._record(len(prompt), length, diverged)
        return Match(length=length, cache=cache, diverged_at=diverged)

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

    def insert(self, tokens: list[int], cache: KVCache) -> None:
        """Keep the KV of a finished sequence. Entries whose blocks are all covered by longer ones are dropped."""
        hashes = block_hashes(tokens, self.block_size)
        if not hashes or self.max_bytes <= 0:
            return
        cache = compact(cache)
        nbytes = cache_nbytes(cache)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            entry = Entry(tuple(tokens), cache, nbytes, hashes)
            for h in hashes:
                old = self._by_hash.get(h)
                self._by_hash[h] = entry
                if old is not None and old is not entry and not any(self._by_hash.get(x) is old for x in old.hashes):
                    self._drop(old)
            self._entries[id(entry)] = entry
            self.bytes += nbytes
            self._evict()

    def _evict(self) -> None:
        while self.bytes > self.max_bytes:
            victim = next((e for e in self._entries.values() if e.refs == 0), None)
            if victim is None:
                return
            self._drop(victim)
            self.stats.evictions += 1

    def _drop(self, entry: Entry) -> None:
        if self._entries.pop(id(entry), None) is None:
            return
        self.bytes -= entry.nbytes
        for h in entry.hashes:
            if self._by_hash.get(h) is entry:
                del self._by_hash[h]

    def clear(self) -> None:
        with self._lock:
            for entry in list(self._entries.values()):
                self._drop(entry)

    def _divergence_in_first_block(self, prompt: list[int]) -> int | None:
        """On a miss, where the prompt leaves the most similar cached sequence (shows volatile prompt heads)."""
        head = prompt[: self.block_size]
        return max((_common_prefix(e.tokens[: self.block_size], head) for e in self._entries.values()), default=None)

    def _record(self, prompt_len: int, reused: int, diverged: int | None) -> None:
        self.stats.recent.append({"prompt_tokens": prompt_len, "reused_tokens": reused, "diverged_at": diverged})
        del self.stats.recent[: -self.keep_recent]


def _common_prefix(a: tuple[int, ...] | list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
