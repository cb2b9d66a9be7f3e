"""The cold tier: cached prefixes as files on disk, so they outlive RAM eviction, model unloads and restarts.

One store per folder keeps every model's files (a subfolder per model key, engine/cache_identity) under one
byte budget, least recently used out first, and writes them on its own thread: the model thread only hands it
numpy views of arrays that never change again. Reads happen on a hit, on the model thread, or ahead of any request
when a model loads (its most recent files, read and checked on a prefetch thread: engine/cache_tiers). A file that
cannot be read back whole (torn by a crash, altered, another format) is deleted and counted, never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlx_manager.engine import kv_file
from mlx_manager.engine.block_index import NO_TOKEN, BlockIndex, block_hashes

log = logging.getLogger(__name__)
# The writer's niceness on Linux: hashing, copying and syncing a 4k-token entry (~170 MB) costs about half a
# core-second, which a running prefill (one attention block per core) should not have to share equally.
BACKGROUND_NICE = 10


@dataclass(eq=False)
class DiskEntry:
    name: str
    tokens: tuple[int, ...]
    hashes: list[bytes]
    trimmable: bool
    size: int


@dataclass
class DiskStats:
    reads: int = 0
    read_seconds: float = 0.0
    read_bytes: int = 0
    writes: int = 0
    write_seconds: float = 0.0
    written_bytes: int = 0
    evictions: int = 0
    unreadable: int = 0  # torn or altered files found and deleted
    skipped: int = 0  # writes left out: no room within the budget or the disk's free space
    prefetched: int = 0  # reads done ahead of any request, when the model loaded


@dataclass(eq=False)
class _Job:
    cache: DiskCache
    name: str
    enc: kv_file.Encoded
    hashes: list[bytes]
    not_before: float
    wanted: Callable[[], bool]  # still worth writing when its turn comes (not replaced by a longer entry)
    written: Callable[[], None]


def lower_thread_priority() -> None:
    """Make the calling thread yield the cores to the model's threads (Linux threads have their own niceness)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE)


def file_name(tokens: tuple[int, ...] | list[int]) -> str:
    raw = np.asarray(tokens, dtype="<u4").tobytes()
    return hashlib.blake2b(raw, digest_size=16).hexdigest() + ".safetensors"


class DiskStore:
    _open: ClassVar[dict[Path, DiskStore]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def open(cls, root: Path, max_bytes: int) -> DiskStore:
        """The store of `root` in this process (models share its budget and writer)."""
        root = root.expanduser().resolve()
        with cls._open_lock:
            store = cls._open.get(root)
            if store is None:
                store = cls._open[root] = DiskStore(root, max_bytes)
            store.max_bytes = max_bytes
            return store

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.bytes = 0
        self._cond = threading.Condition()
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._busy: str | None = None  # the model key being written now
        self._files: OrderedDict[tuple[str, str], int] = OrderedDict()  # (key, name) -> size, least recent first
        self._models: dict[str, DiskCache] = {}
        self._thread: threading.Thread | None = None
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self._scan()

    def _scan(self) -> None:
        found: list[tuple[float, str, str, int]] = []
        for folder in (p for p in self.root.iterdir() if p.is_dir()):
            for path in folder.iterdir():
                if path.name.startswith(".tmp-"):  # a write that never finished
                    path.unlink(missing_ok=True)
                elif path.suffix == ".safetensors":
                    stat = path.stat()
                    found.append((stat.st_mtime, folder.name, path.name, stat.st_size))
        for _, key, name, size in sorted(found):
            self._files[(key, name)] = size
            self.bytes += size

    def model(self, key: str, identity: dict[str, Any], block_size: int) -> DiskCache:
        with self._cond:
            cache = self._models.get(key)
        if cache is not None:
            return cache
        folder = self.root / key
        folder.mkdir(mode=0o700, exist_ok=True)
        described = folder / "identity.json"
        if not described.exists():
            fd = os.open(described, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # what is cached is private
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(identity, f, indent=1, sort_keys=True)
        cache = DiskCache(self, key, folder, block_size)
        cache.load_index()
        with self._cond:
            return self._models.setdefault(key, cache)

    def submit(self, job: _Job) -> None:
        with self._cond:
            old = self._jobs.get((job.cache.key, job.name))
            if old is None or job.not_before < old.not_before:
                self._jobs[(job.cache.key, job.name)] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kv-disk-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, key: str | None, timeout: float) -> bool:
        """Write the queued entries of one model (None: all) now and wait for them; False when time ran out."""
        with self._cond:
            for job in self._jobs.values():
                if key is None or job.cache.key == key:
                    job.not_before = 0.0
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: (
                    (self._busy is None if key is None else self._busy != key)
                    and not any(key is None or k == key for k, _ in self._jobs)
                ),
                timeout=timeout,
            )

    @classmethod
    def drain_all(cls, timeout: float = 60.0) -> None:
        """At shutdown: wait for every store's queued writes (models unloading only queue theirs)."""
        with cls._open_lock:
            stores = list(cls._open.values())
        for store in stores:
            if not store.flush(None, timeout):
                log.warning("KV cache writes to %s did not finish within %.0fs", store.root, timeout)

    def _run(self) -> None:
        lower_thread_priority()
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    job = min(self._jobs.values(), key=lambda j: j.not_before, default=None)
                    if job is not None and job.not_before <= now:
                        break
                    self._cond.wait(timeout=None if job is None else job.not_before - now)
                assert job is not None
                del self._jobs[(job.cache.key, job.name)]
                self._busy = job.cache.key
            try:
                job.cache._write(job)
            except Exception:  # a full or failing disk must not take the writer down
                log.exception("Could not write a KV cache file for %s", job.cache.key)
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    # --- under self._cond ---------------------------------------------------------------------

    def _make_room(self, key: str, size: int) -> bool:
        """Delete least recently used files until `size` fits the budget and the disk keeps its reserve."""
        usage = shutil.disk_usage(self.root)
        reserve = max(1 << 30, usage.total // 20)
        free = usage.free
        while self._files and (self.bytes + size > self.max_bytes or free - size < reserve):
            (old_key, name), old_size = next(iter(self._files.items()))
            self._delete(old_key, name)
            free += old_size
            model = self._models.get(old_key)
            if model is not None:
                model.stats.evictions += 1
        return self.bytes + size <= self.max_bytes and free - size >= reserve

    def _delete(self, key: str, name: str) -> None:
        (self.root / key / name).unlink(missing_ok=True)
        self.bytes -= self._files.pop((key, name), 0)
        model = self._models.get(key)
        if model is not None:
            model._forget(name)

    def _added(self, key: str, name: str, size: int) -> None:
        self._files[(key, name)] = size
        self.bytes += size

    def _touch(self, key: str, name: str) -> None:
        if (key, name) in self._files:
            self._files.move_to_end((key, name))


class DiskCache:
    """One model's files in a store: an index of the tokens each holds, reads on a hit, queued writes."""

    def __init__(self, store: DiskStore, key: str, folder: Path, block_size: int) -> None:
        self.store = store
        self.key = key
        self.folder = folder
        self.block_size = block_size
        self.stats = DiskStats()
        self._index: BlockIndex[DiskEntry] = BlockIndex(block_size)
        self._entries: dict[str, DiskEntry] = {}

    @property
    def nbytes(self) -> int:
        with self.store._cond:
            return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def load_index(self) -> None:
        """Read each file's header (not its data): the tokens it holds."""
        for path in sorted(self.folder.glob("*.safetensors")):
            try:
                header = kv_file.read_header(path, self.key)
            except (OSError, kv_file.UnreadableFile) as exc:
                self._unreadable(path.name, exc)
                continue
            entry = DiskEntry(
                path.name, header.tokens, block_hashes(header.tokens, self.block_size), header.trimmable, header.size
            )
            with self.store._cond:
                if entry.hashes and (self.key, path.name) in self.store._files:
                    self._add(entry)

    def peek(self, prompt: list[int], hashes: list[bytes]) -> int:
        with self.store._cond:
            _, length, _ = self._index.best(prompt, hashes)
        return length

    def best(self, prompt: list[int], hashes: list[bytes]) -> DiskEntry | None:
        """The stored entry serving the longest prefix of `prompt`."""
        with self.store._cond:
            entry, _, _ = self._index.best(prompt, hashes)
        return entry

    def load(self, prompt: list[int], hashes: list[bytes]) -> tuple[list[int], list[Any]] | None:
        """The stored entry serving the longest prefix of `prompt`: its tokens and layer caches."""
        entry = self.best(prompt, hashes)
        raw = self.read_raw(entry) if entry is not None else None
        if entry is None or raw is None:
            return None
        try:
            tokens, cache = kv_file.build(raw)
        except kv_file.UnreadableFile as exc:
            self._unreadable(entry.name, exc)
            return None
        return list(tokens), cache

    def recent(self, max_bytes: int) -> list[DiskEntry]:
        """This model's entries, most recently used first, as many as fit `max_bytes` (what a prefetch reads)."""
        out, total = [], 0
        with self.store._cond:
            for key, name in reversed(self.store._files):
                entry = self._entries.get(name) if key == self.key else None
                if entry is not None and total + entry.size <= max_bytes:
                    out.append(entry)
                    total += entry.size
        return out

    def read_raw(self, entry: DiskEntry, prefetch: bool = False) -> kv_file.Raw | None:
        """An entry's checked bytes (no MLX: any thread); None when it was evicted or is unreadable."""
        start = time.perf_counter()
        try:
            raw = kv_file.read_raw(self.folder / entry.name, self.key)
        except FileNotFoundError:  # evicted meanwhile
            return None
        except (OSError, kv_file.UnreadableFile) as exc:
            self._unreadable(entry.name, exc)
            return None
        with self.store._cond:
            self.store._touch(self.key, entry.name)
            self.stats.reads += 1
            self.stats.prefetched += prefetch
            self.stats.read_seconds += time.perf_counter() - start
            self.stats.read_bytes += entry.size
        with contextlib.suppress(OSError):
            os.utime(self.folder / entry.name)  # recency survives a restart
        return raw

    def put(
        self,
        tokens: tuple[int, ...],
        cache: list[Any],
        trimmable: bool,
        delay: float,
        wanted: Callable[[], bool],
        written: Callable[[], None],
    ) -> None:
        """Queue a write `delay` seconds from now (0: next); it is skipped if `wanted()` is then False."""
        name = file_name(tokens)
        with self.store._cond:
            if name in self._entries:
                written()
                return
        enc = kv_file.encode(tokens, cache, trimmable)
        hashes = block_hashes(tokens, self.block_size)
        self.store.submit(_Job(self, name, enc, hashes, time.monotonic() + delay, wanted, written))

    def flush(self, timeout: float = 60.0) -> bool:
        return self.store.flush(self.key, timeout)

    # --- the writer thread --------------------------------------------------------------------

    def _write(self, job: _Job) -> None:
        if not job.wanted():
            return
        tokens = job.enc.tokens
        with self.store._cond:
            if job.name in self._entries or self._covered(tokens, job.hashes):
                job.written()
                return
            if not self.store._make_room(self.key, job.enc.file_size()):
                self.stats.skipped += 1
                return
        start = time.perf_counter()
        size = kv_file.write(self.folder / job.name, self.key, job.enc)
        with self.store._cond:
            self.store._added(self.key, job.name, size)
            self._add(DiskEntry(job.name, tokens, job.hashes, job.enc.trimmable, size))
            self.stats.writes += 1
            self.stats.write_seconds += time.perf_counter() - start
            self.stats.written_bytes += size
        job.written()

    # --- under store._cond --------------------------------------------------------------------

    def _covered(self, tokens: tuple[int, ...], hashes: list[bytes]) -> bool:
        """A stored trimmable entry already holds all of `tokens`."""
        _, length, _ = self._index.best([*tokens, NO_TOKEN], hashes)
        return length >= len(tokens)

    def _add(self, entry: DiskEntry) -> None:
        self._entries[entry.name] = entry
        for old in self._index.add(entry):
            if old is not entry:
                self.store._delete(self.key, old.name)  # its tokens are all in the new file

    def _forget(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._index.remove(entry)

    def _unreadable(self, name: str, exc: BaseException) -> None:
        log.warning("Ignoring unreadable KV cache file %s/%s (%s); deleting it", self.key, name, exc)
        with self.store._cond:
            self.stats.unreadable += 1
            self.store._delete(self.key, name)
