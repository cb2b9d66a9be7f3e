"""One sequence inside the batch: its sampling setup and how its tokens become text chunks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import mlx.core as mx

from mlx_manager.engine.detokenizer import IncrementalDetokenizer
from mlx_manager.engine.parsers.base import (
    OutputParser,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
)
from mlx_manager.engine.sampling import LogitsProcessor, Sampler, make_logits_processors, make_sampler
from mlx_manager.engine.stopping import StopMatcher
from mlx_manager.engine.types import FinishReason, GenerationChunk, SamplingParams, TokenLogprob, ToolCallDelta

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
    produced: int = 0
    finished: bool = False
    make_parser: Callable[[], OutputParser] | None = None
    # Per-sequence logits processors beyond the sampling ones, e.g. a grammar.
    extra_processors: list[LogitsProcessor] = field(default_factory=list)
    # A vision model's prepared prompt (engine/vision VisionInputs: image tensors); None for token ids only.
    inputs: Any = None
    # The LoRA adapter (`BASE@NAME`) this sequence runs with, None for the base (engine/adapters).
    adapter: str | None = None

    def start(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._parser = self.make_parser() if self.make_parser else None
        self._called_tools = False
        self._detok = IncrementalDetokenizer(tokenizer, self.prompt)
        self._matcher = StopMatcher(self.params.stop)
        self._pending_ids: list[int] = []
        self._pending_lp: list[TokenLogprob] = []
        self._want_logprobs = self.params.logprobs or self.params.top_logprobs > 0

    def sampler(self) -> Sampler:
        return make_sampler(self.params, seed_offset=self.index)

    def processors(self) -> list[LogitsProcessor]:
        return make_logits_processors(self.params) + self.extra_processors

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
            chunk = self._chunk(text)
            chunks = [chunk] if _has_output(chunk) or chunk.token_ids else []
            return chunks + self.finish("stop", flush=False)
        if not text:
            return []
        chunk = self._chunk(text)
        return [chunk] if _has_output(chunk) else []

    def finish(self, reason: FinishReason, flush: bool = True) -> list[GenerationChunk]:
        self.finished = True
        tail = ""
        if flush and reason != "cancelled":
            tail, hit = self._matcher.feed(self._detok.flush())
            if hit:
                reason = "stop"
            else:
                tail += self._matcher.flush()
        chunk = self._chunk(tail, final=reason != "cancelled")
        if reason == "stop" and self._called_tools:
            reason = "tool_calls"
        chunk.finish_reason = reason
        chunk.stop_sequence = self._matcher.matched if reason == "stop" else None
        return [chunk]

    def _chunk(self, text: str, final: bool = False) -> GenerationChunk:
        """Route text through the output parser (content, reasoning, tool calls) into one chunk."""
        chunk = GenerationChunk(self.index, "", self._pending_ids, self._pending_lp)
        self._pending_ids, self._pending_lp = [], []
        if self._parser is None:
            chunk.text = text
            return chunk
        events = self._parser.feed(text) if text else []
        if final:
            events += self._parser.finish()
        content: list[str] = []
        reasoning: list[str] = []
        for event in events:
            if isinstance(event, TextDelta):
                content.append(event.text)
            elif isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif isinstance(event, ToolCallStart):
                self._called_tools = True
                chunk.tool_calls.append(ToolCallDelta(event.index, id=event.id, name=event.name))
            elif isinstance(event, ToolCallArgsDelta):
                chunk.tool_calls.append(ToolCallDelta(event.index, arguments=event.fragment))
        chunk.text, chunk.reasoning = "".join(content), "".join(reasoning)
        return chunk


def _has_output(chunk: GenerationChunk) -> bool:
    return bool(chunk.text or chunk.reasoning or chunk.tool_calls or chunk.logprobs)
