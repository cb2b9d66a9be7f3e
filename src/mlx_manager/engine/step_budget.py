"""A per-step prefill budget, so that arriving prompts do not stall the sequences already decoding.

In each step mlx-lm's BatchGenerator decodes one token for every running sequence, then prefills one segment of
every prompt in its prompt batch, padded to the longest. Left alone it takes up to `prefill_batch_size` prompts of
`prefill_step_size` tokens in one step, and every decoding sequence waits for them. The scheduler bounds that from
outside, without patching the generator: a prompt is cut into segments of a chunk size fixed when it joins the
batch, and it joins only while the prompts prefilling, padded to their widest chunk, fit `tokens` a step.

A step in which no sequence decodes stalls nobody (the prompts' first tokens come after it anyway), so then prompts
join as the generator would take them, up to `batch_size` prompts of `step_size` tokens: a burst of arrivals at an
idle model, or one long prompt alone, prefills at full speed, and the budget holds from the first decoded token on.
When more prompts wait than sequences decode, a step may prefill that many times the budget: a few sequences wait
a little longer so that a crowd of arrivals starts sooner (and the batch fills up again).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mlx_manager.engine.prefill_sharing import Prefill


@dataclass(frozen=True)
class StepRecord:
    """One scheduler step: sequences that got a token, prompt tokens prefilled, prompts that advanced, wall time."""

    decoded: int
    prefilled: int
    prefilling: int
    seconds: float


def prefill_peak(steps: Iterable[StepRecord]) -> int:
    """Most prompt tokens one step prefilled while sequences decoded in it (they waited for that prefill): what
    the budget caps. A step decodes before it prefills, so `decoded` counts only sequences that were running."""
    return max((r.prefilled for r in steps if r.decoded), default=0)


class StepBudget:
    def __init__(self, tokens: int, step_size: int, batch_size: int) -> None:
        self.tokens = tokens  # 0: no budget, the generator's own chunking only
        self.step_size = step_size
        self.batch_size = batch_size  # prompts the generator prefills together

    @property
    def generator_batch(self) -> int:
        """The generator's prompt batch: prompts whose prefill is done stay in it until the next step moves them to
        decoding, so with a budget it has room for as many again, and the budget decides how many prefill."""
        return 2 * self.batch_size if self.tokens else self.batch_size

    def left(self, p: Prefill) -> list[int]:
        """The segments `p` has left to prefill, one a step (the generator splits longer ones at `step_size`)."""
        points = [p.computed, *(c for c in p.cuts if c > p.computed), p.end]
        return [min(b - a, self.step_size) for a, b in itertools.pairwise(points) if b > a]

    def chunk(self, need: int, prefilling: Collection[Prefill], decoding: int, waiting: int) -> int:
        """Tokens a step for a prompt with `need` tokens to prefill; 0: not this step, it would go over budget.
        `decoding`: sequences that wait for this step's prefill; `waiting`: prompts queued when the step began."""
        if not self.tokens or need <= 0:  # a full cache hit costs only its last token, with the decode
            return self.step_size
        left = [segments for segments in map(self.left, prefilling) if segments]
        if len(left) >= self.batch_size:  # more would wait inside the generator and join a later step's prefill
            return 0
        if not decoding:
            return min(need, self.step_size)
        tokens = self.tokens * max(1, waiting // decoding)
        staying = sum(len(segments) > 1 for segments in left)  # still prefilling after this step
        chunk = min(need, self.step_size, tokens // (staying + 1))
        # Padded to the widest, the prefill costs (prompts x widest segment) a step. A prompt waits a step for
        # one about to finish rather than keep a thin chunk for its whole prefill.
        widest = max([chunk, *(max(segments) for segments in left)])
        if (len(left) + 1) * widest > tokens or chunk < min(need, tokens // 2, self.step_size):
            return 0
        return chunk

    def cut(self, prefill: Prefill, chunk: int) -> None:
        """Add segment ends every `chunk` tokens to the ones `prefill` planned (where it may publish its KV)."""
        if not self.tokens:
            return
        grid = range(prefill.start + chunk, prefill.end, chunk)
        prefill.cuts = tuple(sorted({*prefill.cuts, *grid}))
