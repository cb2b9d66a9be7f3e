"""The reasoning budget counts only tokens inside the block and then allows nothing but the end tag."""

from __future__ import annotations

import mlx.core as mx

from mlx_manager.engine.reasoning_budget import ReasoningBudget

START, END, VOCAB = 5, 6, 10


def _allowed(proc: ReasoningBudget, context: list[int]) -> list[int]:
    out = proc(mx.array(context), mx.zeros((1, VOCAB)))
    return [i for i, v in enumerate(out[0].tolist()) if v > -1e30]


def test_budget_starts_when_the_model_opens_the_block() -> None:
    proc = ReasoningBudget(START, END, budget=2, started=False)
    prompt = [1, 2, 3]
    assert len(_allowed(proc, prompt)) == VOCAB
    assert len(_allowed(proc, [*prompt, 7])) == VOCAB  # plain text: not counted
    assert len(_allowed(proc, [*prompt, 7, START])) == VOCAB
    assert len(_allowed(proc, [*prompt, 7, START, 8])) == VOCAB
    assert _allowed(proc, [*prompt, 7, START, 8, 9]) == [END]
    assert len(_allowed(proc, [*prompt, 7, START, 8, 9, END])) == VOCAB  # closed: free again


def test_a_block_opened_by_the_template_counts_from_the_first_token() -> None:
    proc = ReasoningBudget(START, END, budget=1, started=True)
    assert len(_allowed(proc, [1, START])) == VOCAB
    assert _allowed(proc, [1, START, 8]) == [END]
