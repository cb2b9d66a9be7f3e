"""Prefix cache over real mlx-lm KV caches: chained block keys, longest match, LRU under a byte budget, refs."""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import KVCache

from mlx_manager.engine.prefix_cache import PrefixCache, block_hashes

BLOCK = 4
ENTRY_BYTES = 2 * 2 * (2 * 16 * 8 * 4)  # layers x (keys, values) x heads x tokens x dim x float32


def kv(tokens: int, layers: int = 2) -> list[KVCache]:
    """A KV cache holding `tokens` positions, values equal to their position so trims are checkable."""
    cache = []
    for _ in range(layers):
        c = KVCache()
        pos = mx.arange(tokens, dtype=mx.float32).reshape(1, 1, tokens, 1)
        c.update_and_fetch(mx.broadcast_to(pos, (1, 2, tokens, 8)), mx.broadcast_to(pos, (1, 2, tokens, 8)))
        cache.append(c)
    return cache


def test_block_hashes_are_chained_so_equal_blocks_at_different_depths_differ() -> None:
    a = block_hashes([1, 2, 3, 4, 1, 2, 3, 4], BLOCK)
    assert len(a) == 2 and a[0] != a[1]
    assert block_hashes([9, 9, 9, 9, 1, 2, 3, 4], BLOCK)[1] != a[1]
    assert block_hashes([1, 2, 3], BLOCK) == []


def test_longest_prefix_is_reused_and_trimmed_to_the_match() -> None:
    pc = PrefixCache(1 << 20, BLOCK)
    stored = list(range(100, 120))
    pc.insert(stored, kv(20))
    prompt = [*stored[:14], 7, 7, 7]
    match = pc.lookup(prompt)
    assert match.length == 14 and match.diverged_at == 14
    assert match.cache is not None and match.cache[0].offset == 14
    keys, _ = match.cache[0].keys_and_values()
    assert keys.shape[2] == 14 and float(keys[0, 0, 13, 0]) == 13.0


def test_a_full_hit_still_leaves_one_token_to_compute() -> None:
    pc = PrefixCache(1 << 20, BLOCK)
    tokens = list(range(16))
    pc.insert(tokens, kv(16))
    assert pc.lookup(tokens).length == 15


def test_the_lookup_copy_is_independent_of_the_stored_entry() -> None:
    pc = PrefixCache(1 << 20, BLOCK)
    pc.insert(list(range(16)), kv(16))
    first = pc.lookup([*range(12), 50, 51])
    assert first.cache is not None
    first.cache[0].update_and_fetch(mx.zeros((1, 2, 3, 8)), mx.zeros((1, 2, 3, 8)))
    again = pc.lookup(list(range(16)))
    assert again.cache is not None and again.length == 15
    assert float(again.cache[0].keys_and_values()[0][0, 0, 14, 0]) == 14.0


def test_miss_reports_where_the_prompt_diverged() -> None:
    pc = PrefixCache(1 << 20, BLOCK)
    pc.insert(list(range(20)), kv(20))
    miss = pc.lookup([0, 1, 99, 3, 4, 5, 6, 7])
    assert miss.length == 0 and miss.cache is None and miss.diverged_at == 2
    assert pc.stats.recent[-1] == {"prompt_tokens": 8, "reused_tokens": 0, "diverged_at": 2, "tier": None}


def test_lru_eviction_keeps_the_byte_budget() -> None:
    one = ENTRY_BYTES
    pc = PrefixCache(int(one * 2.5), BLOCK)
    for base in (0, 1000, 2000):
        pc.insert([base + i for i in range(16)], kv(16))
    assert len(pc) == 2 and pc.bytes <= pc.max_bytes and pc.stats.evictions == 1
    assert pc.lookup(list(range(16))).length == 0  # the oldest went first
    assert pc.lookup([1000 + i for i in range(16)]).length == 15


def test_a_lookup_refreshes_recency() -> None:
    one = ENTRY_BYTES
    pc = PrefixCache(int(one * 2.5), BLOCK)
    pc.insert(list(range(16)), kv(16))
    pc.insert([1000 + i for i in range(16)], kv(16))
    pc.lookup(list(range(16)))  # entry 0 becomes most recent
    pc.insert([2000 + i for i in range(16)], kv(16))
    assert pc.lookup(list(range(16))).length == 15
    assert pc.lookup([1000 + i for i in range(16)]).length == 0


def test_referenced_entries_are_not_evicted() -> None:
    one = ENTRY_BYTES
    pc = PrefixCache(int(one * 1.5), BLOCK)
    pc.insert(list(range(16)), kv(16))
    (entry,) = pc._entries.values()
    entry.refs = 1  # a lookup in progress holds it
    pc.insert([1000 + i for i in range(16)], kv(16))
    assert entry in pc._entries.values()
    entry.refs = 0


def test_a_longer_conversation_replaces_the_entry_it_extends() -> None:
    pc = PrefixCache(1 << 20, BLOCK)
    pc.insert(list(range(8)), kv(8))
    pc.insert(list(range(16)), kv(16))
    assert len(pc) == 1
    assert pc.lookup([*range(16), 77]).length == 16


def test_entries_are_compacted_out_of_bigger_buffers() -> None:
    pc = PrefixCache(1 << 20, BLOCK)
    cache = kv(16)
    for c in cache:  # a view into a much larger buffer, as BatchGenerator.extract_cache returns
        c.keys = mx.zeros((1, 2, 4096, 8))[:, :, :16, :]
        c.values = mx.zeros((1, 2, 4096, 8))[:, :, :16, :]
    pc.insert(list(range(16)), cache)
    assert pc.bytes == ENTRY_BYTES
