"""One sequence's decode loop on mlx-lm, run on the model's own thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.generate import generate_step
from mlx_lm.tokenizer_utils import TokenizerWrapper

from mlx_manager.engine.detokenizer import IncrementalDetokenizer
from mlx_manager.engine.sampling import make_logits_processors, make_sampler
from mlx_manager.engine.stopping import StopMatcher
from mlx_manager.engine.types import FinishReason, GenerationChunk, ModelInfo, SamplingParams, TokenLogprob

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    info: ModelInfo
    model: nn.Module
    tokenizer: TokenizerWrapper
    stop_token_ids: frozenset[int]
    context_length: int | None
    memory_bytes: int
    vocab_size: int
    extra: dict[str, Any] = field(default_factory=dict)


def _token_logprob(tokenizer: TokenizerWrapper, token: int, logprobs: mx.array, top: int) -> TokenLogprob:
    flat = logprobs.reshape(-1)
    top_entries: list[tuple[str, int, float]] = []
    if top > 0:
        ids = mx.argpartition(-flat, kth=top - 1)[:top]
        id_list = cast(list[int], ids.tolist())
        values = cast(list[float], flat[ids].tolist())
        pairs = sorted(zip(id_list, values, strict=True), key=lambda p: -p[1])
        top_entries = [(tokenizer.decode([i]), i, v) for i, v in pairs]
    text = tokenizer.decode([token])
    return TokenLogprob(
        token=text, token_id=token, logprob=cast(float, flat[token].item()), bytes=list(text.encode()), top=top_entries
    )


def run_sequence(
    lm: LoadedModel,
    prompt_ids: list[int],
    params: SamplingParams,
    max_tokens: int,
    *,
    index: int = 0,
    seed_offset: int = 0,
    cancelled: Callable[[], bool],
    emit: Callable[[GenerationChunk], None],
) -> int:
    """Generate one completion, emitting text chunks; returns the number of completion tokens."""
    tokenizer = lm.tokenizer
    detok = IncrementalDetokenizer(tokenizer, prompt_ids)
    matcher = StopMatcher(params.stop)
    want_logprobs = params.logprobs or params.top_logprobs > 0
    pending_lp: list[TokenLogprob] = []
    pending_ids: list[int] = []
    finish: FinishReason = "length"
    produced = 0

    steps = generate_step(
        mx.array(prompt_ids),
        lm.model,
        max_tokens=max_tokens,
        sampler=make_sampler(params, seed_offset),
        logits_processors=make_logits_processors(params, len(prompt_ids)),
    )
    try:
        for step_token, logprobs in steps:
            token = int(step_token)  # mlx-lm yields plain ints despite its annotation
            if cancelled():
                finish = "cancelled"
                break
            produced += 1
            if token in lm.stop_token_ids:
                finish = "stop"
                break
            pending_ids.append(token)
            if want_logprobs:
                pending_lp.append(_token_logprob(tokenizer, token, logprobs, params.top_logprobs))
            text, hit = matcher.feed(detok.add(token))
            if hit:
                finish = "stop"
                if text or pending_ids:
                    emit(GenerationChunk(index, text, pending_ids, pending_lp))
                emit(GenerationChunk(index, "", [], [], finish_reason=finish))
                return produced
            if text:
                emit(GenerationChunk(index, text, pending_ids, pending_lp))
                pending_ids, pending_lp = [], []
    finally:
        steps.close()

    tail, hit = matcher.feed(detok.flush())
    if hit:
        finish = "stop"
    elif finish != "cancelled":
        tail += matcher.flush()
    emit(GenerationChunk(index, tail, pending_ids, pending_lp, finish_reason=finish))
    return produced
