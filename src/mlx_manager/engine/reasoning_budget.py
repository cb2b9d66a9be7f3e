"""A reasoning token budget: once a sequence has reasoned for `budget` tokens, the end tag is forced."""

from __future__ import annotations

from typing import cast

import mlx.core as mx


class ReasoningBudget:
    """mlx-lm logits processor; `tokens` is the prompt on the first call, then one more generated token per call."""

    def __init__(self, start_id: int, end_id: int, budget: int, started: bool) -> None:
        self.start_id = start_id
        self.end_id = end_id
        self.budget = budget
        self.inside = started
        self.used = 0
        self._seen: int | None = None

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self._seen is None:
            self._seen = tokens.size
        elif tokens.size > self._seen:
            for token in cast(list[int], tokens[self._seen :].tolist()):
                self._advance(token)
            self._seen = tokens.size
        if not self.inside or self.used < self.budget:
            return logits
        only_end = mx.arange(logits.shape[-1]) == self.end_id
        return mx.where(only_end, mx.zeros_like(logits), mx.full(logits.shape, -mx.inf, dtype=logits.dtype))

    def _advance(self, token: int) -> None:
        if token == self.start_id:
            self.inside, self.used = True, 0
        elif token == self.end_id:
            self.inside = False
        elif self.inside:
            self.used += 1
