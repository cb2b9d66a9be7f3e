"""Find the cached entry that covers the longest prefix of a prompt, by chained block hashes.

Shared by the RAM tier (entries hold KV arrays) and the disk tier (entries name files). An entry whose cache
can be trimmed (plain attention KV) serves any prefix of its tokens; one that cannot (sliding-window or
recurrent layers past their window) serves only a prompt that starts with all of its tokens.
"""

from __future__ import annotations

import hashlib
from typing import Generic, Protocol, TypeVar

# A token id past every prompt's: asks whether an entry covers all of some tokens. Block hashes take 32-bit ids,
# and no vocabulary (nor the image pseudo-ids) reaches this one.
NO_TOKEN = (1 << 32) - 1


class Indexed(Protocol):
    @property
    def tokens(self) -> tuple[int, ...]: ...

    @property
    def hashes(self) -> list[bytes]: ...

    @property
    def trimmable(self) -> bool: ...


E = TypeVar("E", bound=Indexed)


def block_hashes(tokens: list[int] | tuple[int, ...], block_size: int) -> list[bytes]:
    """Chained hashes of each full block: hash_i = H(hash_{i-1} || block_i)."""
    hashes: list[bytes] = []
    previous = b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = tokens[start : start + block_size]
        previous = hashlib.blake2b(previous + b"".join(t.to_bytes(4, "little") for t in block), digest_size=16).digest()
        hashes.append(previous)
    return hashes


def common_prefix(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class BlockIndex(Generic[E]):
    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._by_hash: dict[bytes, E] = {}  # trimmable entries, under each of their block hashes
        self._exact: dict[bytes, list[E]] = {}  # the others, under their last full block's hash
        self._seen: dict[bytes, E] = {}  # the others under each block hash: where a prompt leaves them

    def add(self, entry: E) -> list[E]:
        """Index `entry`; returns the entries it makes redundant (to drop): trimmable ones whose blocks it all
        covers, or one holding the very same tokens."""
        gone: list[E] = []
        if not entry.trimmable:
            same = self._exact.setdefault(entry.hashes[-1], [])
            gone = [e for e in same if e.tokens == entry.tokens]
            same[:] = [e for e in same if e.tokens != entry.tokens] + [entry]
            self._seen.update(dict.fromkeys(entry.hashes, entry))
            return gone
        for h in entry.hashes:
            old = self._by_hash.get(h)
            self._by_hash[h] = entry
            if old is not None and old is not entry and not any(self._by_hash.get(x) is old for x in old.hashes):
                gone.append(old)
        return gone

    def remove(self, entry: E) -> None:
        if not entry.trimmable:
            same = self._exact.get(entry.hashes[-1], [])
            if entry in same:
                same.remove(entry)
            if not same:
                self._exact.pop(entry.hashes[-1], None)
            for h in entry.hashes:
                if self._seen.get(h) is entry:
                    del self._seen[h]
            return
        for h in entry.hashes:
            if self._by_hash.get(h) is entry:
                del self._by_hash[h]

    def best(self, prompt: list[int], hashes: list[bytes]) -> tuple[E | None, int, int | None]:
        """The entry that serves the longest prefix of `prompt` (at most len(prompt) - 1 tokens, so one is left
        to compute), how many tokens it serves, and where the prompt left the entry it followed furthest."""
        limit = len(prompt) - 1
        best: E | None = None
        best_len = 0
        trim_entry: E | None = None
        exact_seen: E | None = None  # the exact entry sharing the most blocks, usable or not
        # Chained hashes: a hit at some depth means the whole prompt up to it matched, so no early exit is needed
        # (an entry that cannot be trimmed is indexed under its last block only).
        for h in hashes:
            trim_entry = self._by_hash.get(h, trim_entry)
            exact_seen = self._seen.get(h, exact_seen)
            for e in self._exact.get(h, ()):
                n = len(e.tokens)
                if best_len < n <= limit and tuple(prompt[:n]) == e.tokens:
                    best, best_len = e, n
        diverged: int | None = None
        if trim_entry is not None:
            same = common_prefix(trim_entry.tokens, prompt)
            n = min(same, limit)
            if n > best_len:
                best, best_len = trim_entry, n
            diverged = same if same < len(prompt) else None
        elif exact_seen is not None:
            same = common_prefix(exact_seen.tokens, prompt)
            diverged = same if same < len(prompt) else None
        return best, best_len, diverged
