"""Prefill computed once and shared while it runs.

A prompt's KV is published to the prefix cache when its prefill is done (not only when the request ends), so a
cancel or a disconnect keeps it. A waiting request whose prompt shares enough blocks with one still being
prefilled waits for that prefill to publish the shared part instead of computing it a second time. Where the
prefill can publish is planned when it starts: BatchGenerator stops at segment ends, so a cache that cannot be
trimmed (sliding-window or recurrent layers) is published exactly at the shared positions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from mlx_manager.engine.block_index import block_hashes
from mlx_manager.engine.sequence import Sequence

# Wait for another prefill only for at least this many blocks, and at least this share of one's own prefill:
# a short common head (a BOS, "You are") is cheaper to compute again than a step spent waiting.
MIN_SHARED_BLOCKS = 4
MIN_SHARED_FRACTION = 0.25


@dataclass(eq=False)
class Prefill:
    """A running sequence's prefill: what it reused, how far it got, where it will publish."""

    seq: Sequence
    hashes: list[bytes]
    start: int  # tokens reused from the cache
    end: int  # len(prompt) - 1: the last prompt token is computed with the first decode step
    cuts: tuple[int, ...] = ()  # planned segment ends between start and end
    store: bool = True  # the request lets its KV be cached
    computed: int = 0
    demanded: set[int] = field(default_factory=set)  # publish when a segment ends here (caches not trimmable)
    wanted: int | None = None  # publish once computed reaches this (trimmable caches)

    def __post_init__(self) -> None:
        self.computed = self.start

    def segments(self) -> list[list[int]]:
        prompt = self.seq.prompt
        points = [self.start, *self.cuts, self.end, len(prompt)]
        return [prompt[a:b] for a, b in itertools.pairwise(points) if b > a]

    def stops(self) -> list[int]:
        """Positions where a segment ends and the cache can be published, not reached yet."""
        return [p for p in (*self.cuts, self.end) if p > self.computed]


class PrefillSharing:
    def __init__(self, block_size: int, step: int, trimmable: bool) -> None:
        self.block_size = block_size
        self.step = step
        self.trimmable = trimmable
        self.running: dict[int, Prefill] = {}  # by batch uid, while prefilling
        self._hashes: dict[Sequence, list[bytes]] = {}
        self._prefills: dict[Sequence, Prefill] = {}  # until the sequence leaves the batch

    def start(self, uid: int, prefill: Prefill) -> None:
        self.running[uid] = prefill
        self._prefills[prefill.seq] = prefill

    def reused(self, seq: Sequence) -> int:
        """Prompt tokens `seq` took from the cache when it was admitted."""
        found = self._prefills.get(seq)
        return found.start if found is not None else 0

    def hashes(self, seq: Sequence) -> list[bytes]:
        found = self._hashes.get(seq)
        if found is None:
            found = self._hashes[seq] = block_hashes(seq.prompt, self.block_size)
        return found

    def clear(self) -> None:
        self.running.clear()
        self._hashes.clear()
        self._prefills.clear()

    def forget(self, seq: Sequence) -> None:
        self._hashes.pop(seq, None)
        self._prefills.pop(seq, None)
        if seq.uid is not None:
            self.running.pop(seq.uid, None)

    def plan(
        self, seq: Sequence, start: int, diverged: int | None, later: list[tuple[Sequence, int]], store: bool
    ) -> Prefill:
        """Where `seq`'s prefill stops. A cache that cannot be trimmed is published only where a segment ends, so
        it ends about every `step` tokens, where the prompt left the closest cached one, and where the waiting
        prompts in `later` (with what the cache holds for each) share blocks with it."""
        end = len(seq.prompt) - 1
        cuts: set[int] = set()
        demanded: set[int] = set()
        if store and not self.trimmable:
            bs = self.block_size
            cuts.update((start + k * self.step) // bs * bs for k in range(1, (end - start) // self.step + 1))
            if diverged is not None:  # published: the next prompt with this head (and another tail) starts there
                demanded.add(diverged // bs * bs)
            mine = self.hashes(seq)
            for other, have in later:
                shared = _shared_blocks(mine, self.hashes(other)) * bs
                if shared - have >= bs:
                    cuts.add(shared)
        cuts = {c for c in cuts | demanded if start < c < end}
        prefill = Prefill(seq, self.hashes(seq), start, end, tuple(sorted(cuts)), store)
        prefill.demanded = demanded & cuts
        return prefill

    def provider(self, seq: Sequence, have: int) -> tuple[Prefill, int] | None:
        """The running prefill worth waiting for and the position to wait for, or None to start now. `have`:
        prompt tokens the cache already holds."""
        mine = self.hashes(seq)
        own = len(seq.prompt) - 1 - have
        best: tuple[Prefill, int] | None = None
        for p in self.running.values():
            if not p.store:
                continue
            shared = min(_shared_blocks(mine, p.hashes) * self.block_size, p.end, len(seq.prompt) - 1)
            target = shared if self.trimmable else max((s for s in p.stops() if s <= shared), default=0)
            gain = target - have
            if gain < MIN_SHARED_BLOCKS * self.block_size or gain < MIN_SHARED_FRACTION * own:
                continue
            if best is None or target > best[1]:
                best = (p, target)
        return best

    def wait_for(self, p: Prefill, target: int) -> None:
        if self.trimmable:
            p.wanted = target if p.wanted is None else min(p.wanted, target)
        else:
            p.demanded.add(target)

    def progress(self, p: Prefill, processed: int, end_of_segment: bool) -> bool:
        """Note a prefill step; True when the sequence's cache should be published now."""
        p.computed = p.start + processed
        if not p.store:
            return False
        if end_of_segment and (p.computed == p.end or p.computed in p.demanded):
            return True
        return p.wanted is not None and p.computed >= p.wanted

    def published(self, p: Prefill) -> None:
        p.demanded = {d for d in p.demanded if d > p.computed}
        if p.wanted is not None and p.wanted <= p.computed:
            p.wanted = None


def _shared_blocks(a: list[bytes], b: list[bytes]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
