"""One sequence inside the batch: its sampling setup and how its tokens become text chunks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import mlx.core as mx

from mlx_manager.engine.detokenizer import IncrementalDetokenizer
from mlx_manager.engine.sampling import LogitsProcessor, Sampler, make_logits_processors, make_sampler
from mlx_manager.engine.stopping import StopMatcher
from mlx_manager.engine.types import FinishReason, GenerationChunk, SamplingParams, TokenLogprob

if TYPE_CHECKING:
    from mlx_manager.engine.generation import Generation


def token_logprob(tokenizer: Any, token: int, logprobs: mx.array, top: int) -> TokenLogprob:
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


@dataclass(eq=False)
class Sequence:
    gen: Generation
    index: int
    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    priority: int = 0
    arrival: float = field(default_factory=time.monotonic)
    uid: int | None = None
    cached_tokens: int = 0
    produced: int = 0
    finished: bool = False

    def start(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._detok = IncrementalDetokenizer(tokenizer, self.prompt)
        self._matcher = StopMatcher(self.params.stop)
        self._pending_ids: list[int] = []
        self._pending_lp: list[TokenLogprob] = []
        self._want_logprobs = self.params.logprobs or self.params.top_logprobs > 0

    def sampler(self) -> Sampler:
        return make_sampler(self.params, seed_offset=self.index)

    def processors(self) -> list[LogitsProcessor]:
        return make_logits_processors(self.params)

    def on_token(self, token: int, logprobs: mx.array, stop_token: bool) -> list[GenerationChunk]:
        """Chunks to emit for one sampled token; sets `finished` when a stop token or stop string ends it."""
        self.produced += 1
        if stop_token:
            return self.finish("stop")
        self._pending_ids.append(token)
        if self._want_logprobs:
            self._pending_lp.append(token_logprob(self._tokenizer, token, logprobs, self.params.top_logprobs))
        text, hit = self._matcher.feed(self._detok.add(token))
        if hit:
            chunks = [self._chunk(text)] if text or self._pending_ids else []
            return chunks + self.finish("stop", flush=False)
        return [self._chunk(text)] if text else []

    def finish(self, reason: FinishReason, flush: bool = True) -> list[GenerationChunk]:
        self.finished = True
        tail = ""
        if flush and reason != "cancelled":
            tail, hit = self._matcher.feed(self._detok.flush())
            if hit:
                reason = "stop"
            else:
                tail += self._matcher.flush()
        chunk = self._chunk(tail)
        chunk.finish_reason = reason
        return [chunk]

    def _chunk(self, text: str) -> GenerationChunk:
        chunk = GenerationChunk(self.index, text, self._pending_ids, self._pending_lp)
        self._pending_ids, self._pending_lp = [], []
        return chunk
