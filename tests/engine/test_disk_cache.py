"""The cold tier's files and store: round trips of every storable layer cache, torn and altered files ignored,
the byte budget with least recently used files out first, writes queued off the calling thread."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm.models.cache import ArraysCache, KVCache, RotatingKVCache

from mlx_manager.engine import kv_file
from mlx_manager.engine.block_index import block_hashes
from mlx_manager.engine.disk_cache import BACKGROUND_NICE, DiskCache, DiskStore, file_name

KEY = "k" * 32
BLOCK = 4


def kv(tokens: int, dtype: mx.Dtype = mx.float32) -> KVCache:
    c = KVCache()
    x = mx.arange(tokens * 16, dtype=mx.float32).reshape(1, 2, tokens, 8).astype(dtype)
    keys, values = c.update_and_fetch(x, x + 1)  # sliced to `tokens`
    c.keys, c.values = mx.contiguous(keys), mx.contiguous(values)
    return c


def mixed(tokens: int) -> list[Any]:
    rotating = RotatingKVCache(max_size=8)
    x = mx.arange(tokens * 16, dtype=mx.float32).reshape(1, 2, tokens, 8)
    rotating.update_and_fetch(x, x)
    recurrent = ArraysCache(2)
    recurrent[0] = mx.ones((1, 3, 16))
    recurrent[1] = mx.full((1, 2, 4, 4), 0.5)
    return [kv(tokens, mx.bfloat16), rotating, recurrent]


def same(a: list[Any], b: list[Any]) -> bool:
    def arrays(cache: list[Any]) -> list[mx.array]:
        out: list[mx.array] = []
        stack: list[object] = [c.state for c in cache]
        while stack:
            item = stack.pop()
            if isinstance(item, mx.array):
                out.append(item)
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
        return out

    left, right = arrays(a), arrays(b)
    return len(left) == len(right) and all(
        x.dtype == y.dtype and mx.array_equal(x, y).item() for x, y in zip(left, right, strict=True)
    )


def write(tmp_path: Path, tokens: tuple[int, ...], cache: list[Any], trimmable: bool = True) -> Path:
    path = tmp_path / file_name(tokens)
    kv_file.write(path, KEY, kv_file.encode(tokens, cache, trimmable))
    return path


def test_every_storable_layer_cache_reads_back_equal_with_its_tokens(tmp_path: Path) -> None:
    cache = mixed(20)
    tokens = tuple(range(20))
    path = write(tmp_path, tokens, cache, trimmable=False)
    got_tokens, got = kv_file.read(path, KEY)
    assert got_tokens == tokens and same(cache, got)
    assert [type(c).__name__ for c in got] == ["KVCache", "RotatingKVCache", "ArraysCache"]
    assert got[1].offset == 20 and got[1].max_size == 8
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert kv_file.read_header(path, KEY).trimmable is False


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_torn_or_altered_file_is_refused(tmp_path: Path, damage: str) -> None:
    path = write(tmp_path, tuple(range(16)), [kv(16)])
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip":
        data[-5] ^= 0xFF  # inside the tensor data: only the digest can tell
    else:
        data = bytearray(b"not a safetensors file at all")
    path.write_bytes(bytes(data))
    with pytest.raises(kv_file.UnreadableFile):
        kv_file.read(path, KEY)


def test_a_file_of_another_model_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, tuple(range(16)), [kv(16)])
    with pytest.raises(kv_file.UnreadableFile):
        kv_file.read_header(path, "another-model")


def store_with(tmp_path: Path, max_bytes: int) -> tuple[DiskStore, DiskCache]:
    store = DiskStore(tmp_path / "kv", max_bytes)
    return store, store.model(KEY, {"test": True}, BLOCK)


def put(disk: DiskCache, tokens: tuple[int, ...], trimmable: bool = True) -> None:
    disk.put(tokens, [kv(len(tokens))], trimmable, 0.0, lambda: True, lambda: None)
    assert disk.flush(10)


def test_stored_prefixes_are_found_again_after_the_store_is_reopened(tmp_path: Path) -> None:
    _, disk = store_with(tmp_path, 1 << 30)
    put(disk, tuple(range(100, 120)))
    reopened = DiskStore(tmp_path / "kv", 1 << 30).model(KEY, {"test": True}, BLOCK)
    prompt = [*range(100, 114), 7, 7]
    assert reopened.peek(prompt, block_hashes(prompt, BLOCK)) == 14
    loaded = reopened.load(prompt, block_hashes(prompt, BLOCK))
    assert loaded is not None and loaded[0] == list(range(100, 120))
    assert reopened.stats.reads == 1


def test_a_torn_file_found_at_start_is_deleted_and_counted(tmp_path: Path) -> None:
    _, disk = store_with(tmp_path, 1 << 30)
    put(disk, tuple(range(16)))
    (path,) = disk.folder.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    (disk.folder / ".tmp-123-x.safetensors").write_bytes(b"half")
    reopened = DiskStore(tmp_path / "kv", 1 << 30).model(KEY, {"test": True}, BLOCK)
    assert len(reopened) == 0 and reopened.stats.unreadable == 1
    assert list(disk.folder.glob("*.safetensors")) == [] and not list(disk.folder.glob(".tmp-*"))


def test_the_byte_budget_evicts_least_recently_used_files(tmp_path: Path) -> None:
    store, disk = store_with(tmp_path, 1 << 30)
    put(disk, tuple(range(16)))
    store.max_bytes = int(store.bytes * 2.5)  # room for two files of this size
    for base in (1000, 2000):
        put(disk, tuple(base + i for i in range(16)))
    assert len(disk) == 2 and store.bytes <= store.max_bytes and disk.stats.evictions == 1
    first = list(range(16))
    assert disk.peek(first, block_hashes(first, BLOCK)) == 0


def test_a_longer_entry_replaces_the_file_it_extends(tmp_path: Path) -> None:
    _, disk = store_with(tmp_path, 1 << 30)
    put(disk, tuple(range(8)))
    put(disk, tuple(range(16)))
    assert len(disk) == 1 and len(list(disk.folder.glob("*.safetensors"))) == 1
    put(disk, tuple(range(12)))  # already held by the longer one: not written
    assert disk.stats.writes == 2


def test_entries_that_cannot_be_trimmed_are_kept_side_by_side(tmp_path: Path) -> None:
    _, disk = store_with(tmp_path, 1 << 30)
    put(disk, tuple(range(8)), trimmable=False)
    put(disk, tuple(range(16)), trimmable=False)
    assert len(disk) == 2
    prompt = [*range(12), 99]
    assert disk.peek(prompt, block_hashes(prompt, BLOCK)) == 8  # the exact 8-token state, not a cut of 16


def test_a_write_no_longer_wanted_is_skipped(tmp_path: Path) -> None:
    _, disk = store_with(tmp_path, 1 << 30)
    disk.put(tuple(range(16)), [kv(16)], True, 0.0, lambda: False, lambda: None)
    assert disk.flush(10) and len(disk) == 0 and disk.stats.writes == 0


def test_the_store_folder_is_private(tmp_path: Path) -> None:
    store, disk = store_with(tmp_path, 1 << 30)
    assert oct(os.stat(store.root).st_mode & 0o777) == "0o700"
    assert oct(os.stat(disk.folder).st_mode & 0o777) == "0o700"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads have their own niceness on Linux only")
def test_the_writer_thread_yields_the_cores_to_the_model(tmp_path: Path) -> None:
    store, disk = store_with(tmp_path, 1 << 30)
    put(disk, tuple(range(16)))
    assert store._thread is not None and store._thread.native_id is not None
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, store._thread.native_id) == min(here + BACKGROUND_NICE, 19)
