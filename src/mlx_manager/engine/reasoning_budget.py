"""A reasoning token budget: once a sequence has reasoned for `budget` tokens, the end tag is forced."""

from __future__ import annotations

import mlx.core as mx

from mlx_manager.engine.sampling import NewTokens


class ReasoningBudget:
    """mlx-lm logits processor; `tokens` is the prompt on the first call, then one more generated token per call."""

    def __init__(self, start_id: int, end_id: int, budget: int, started: bool) -> None:
        self.start_id = start_id
        self.end_id = end_id
        self.budget = budget
        self.inside = started
        self.used = 0
        self.new_tokens = NewTokens()

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        for token in self.new_tokens(tokens):
            self._advance(token)
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
