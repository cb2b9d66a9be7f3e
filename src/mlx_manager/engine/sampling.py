"""Samplers and logits processors for one sequence, with its own random key so seeds are reproducible."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import cast

import mlx.core as mx
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, make_repetition_penalty

from mlx_manager.engine.generation_defaults import effective
from mlx_manager.engine.types import SamplingParams

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]

REPETITION_CONTEXT = 64


def greedy(logprobs: mx.array) -> mx.array:
    return mx.argmax(logprobs, axis=-1)


class SeededSampler:
    """Temperature, then the filters, then a Gumbel-max draw (a categorical sample) with the sequence's own key
    chain. Speculative decoding (engine/speculative) draws several positions at once with the keys this sampler
    would use one by one, so a seed gives the same text with and without speculation."""

    def __init__(self, params: SamplingParams, seed_offset: int = 0) -> None:
        values = effective(params)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.key = mx.random.key((seed + seed_offset) % (1 << 63))
        self.filters: list[Callable[[mx.array], mx.array]] = []
        if 0 < values.top_p < 1:
            self.filters.append(lambda x: apply_top_p(x, values.top_p))
        if values.min_p > 0:
            self.filters.append(lambda x: apply_min_p(x, values.min_p))
        if values.top_k > 0:
            self.filters.append(lambda x: apply_top_k(x, values.top_k))
        self.inv_temp = 1.0 / values.temperature

    def scaled(self, logprobs: mx.array) -> mx.array:
        """The distribution sampled from, as log-probabilities (-inf where a filter removed a token)."""
        # Temperature first, then the filters, as OpenAI and vLLM do (mlx-lm filters before scaling).
        scaled = logprobs * self.inv_temp
        scaled = scaled - mx.logsumexp(scaled, axis=-1, keepdims=True)
        for f in self.filters:
            scaled = f(scaled)
        return scaled

    def keys(self, n: int) -> tuple[list[mx.array], list[mx.array]]:
        """The keys of the next `n` draws and the chain's state after each, without using them."""
        subs: list[mx.array] = []
        states: list[mx.array] = []
        key = self.key
        for _ in range(n):
            key, sub = mx.random.split(key)
            subs.append(sub)
            states.append(key)
        return subs, states

    def __call__(self, logprobs: mx.array) -> mx.array:
        self.key, sub = mx.random.split(self.key)
        scaled = self.scaled(logprobs)
        return mx.argmax(scaled + mx.random.gumbel(scaled.shape, key=sub), axis=-1)


def make_sampler(params: SamplingParams, seed_offset: int = 0) -> Sampler:
    # Greedy sequences share one function so the batch samples them in a single call.
    if effective(params).temperature == 0:
        return greedy
    return SeededSampler(params, seed_offset)


class NewTokens:
    """What a logits processor has not seen yet: its first call brings only the prompt (nothing generated), each
    later call one generated token more."""

    def __init__(self) -> None:
        self._seen: int | None = None

    def __call__(self, tokens: mx.array) -> list[int]:
        if self._seen is None:
            self._seen = tokens.size
            return []
        if tokens.size <= self._seen:
            return []
        new = cast(list[int], tokens[self._seen :].tolist())
        self._seen = tokens.size
        return new


class OpenAIPenalties:
    """presence/frequency penalties over the tokens generated so far, as OpenAI defines them."""

    def __init__(self, presence: float, frequency: float) -> None:
        self.presence = presence
        self.frequency = frequency
        self.counts: dict[int, int] = {}
        self.new_tokens = NewTokens()

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        for tok in self.new_tokens(tokens):
            self.counts[tok] = self.counts.get(tok, 0) + 1
        if not self.counts:
            return logits
        ids = mx.array(list(self.counts))
        counts = mx.array(list(self.counts.values()), dtype=logits.dtype)
        penalty = counts * self.frequency + self.presence
        return logits.at[..., ids].subtract(penalty)


def make_logits_processors(params: SamplingParams) -> list[LogitsProcessor]:
    processors: list[LogitsProcessor] = []
    if params.logit_bias:
        ids = mx.array(list(params.logit_bias))
        values = mx.array(list(params.logit_bias.values()))
        processors.append(lambda _tokens, logits: logits.at[..., ids].add(values.astype(logits.dtype)))
    if params.presence_penalty or params.frequency_penalty:
        processors.append(OpenAIPenalties(params.presence_penalty, params.frequency_penalty))
    repetition = effective(params).repetition_penalty
    if repetition != 1.0:
        processors.append(make_repetition_penalty(repetition, REPETITION_CONTEXT))
    return processors
