"""A vision model's fallback scheduler: one sequence at a time through mlx-vlm's generate_step, on the model's thread.

For the architectures the batched path (engine/vision/scheduler) cannot run: a language model whose caches are
not plain attention KV (sliding windows, recurrent layers, cross-attention). The image prefill and Qwen's mRoPE
state then live in the model object, so sequences queue (with the same admission limits, priorities and aging as
the batch scheduler) and run one after another; each token still goes through the same Sequence and Generation.
Image prompts skip the prefix cache.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import cast

import mlx.core as mx

from mlx_manager.engine.generation import Generation
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.scheduler import SchedulerConfig, admission_order
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.types import GenerationChunk
from mlx_manager.engine.vision.inputs import token_stream
from mlx_manager.engine.vision.scheduler import VisionScheduler

log = logging.getLogger(__name__)


class SerialVisionScheduler(VisionScheduler):
    def __init__(self, lm: LoadedModel, config: SchedulerConfig) -> None:
        super().__init__(lm, config)
        self._tokens: Iterator[tuple[int, mx.array]] | None = None  # the running sequence's generate_step
        self._uid = 0

    @property
    def running_slots(self) -> int:
        return 1  # one sequence at a time (module docstring)

    # --- the model thread ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            while self._wait_for_work():
                self._run_calls()
                try:
                    self._step_one()
                except Exception as exc:  # one bad request must not take the model down with it
                    log.exception("Generation step failed on %s; failing its request", self.lm.info.id)
                    self._fail_current(exc)
        finally:
            self._close_tokens()
            self._run_calls()
            self.cache.clear()

    def _step_one(self) -> None:
        out: dict[Generation, list[GenerationChunk]] = defaultdict(list)
        self._drop_cancelled_vision(out)
        if not self._running and self._waiting:
            self._start_next()
        for seq in list(self._running.values()):
            assert self._tokens is not None
            step = next(self._tokens, None)  # the first call runs the (image) prefill
            self.stats.steps += 1
            if step is None:
                chunks = seq.finish("length")
            else:
                token, logprobs = step
                stop_token = token in self.lm.stop_token_ids and not seq.params.ignore_eos
                chunks = seq.on_token(token, logprobs, stop_token)
                if not seq.finished and seq.produced >= seq.max_tokens:
                    chunks += seq.finish("length")
            out[seq.gen].extend(chunks)
            if seq.finished:
                self._end(seq)
        self.stats.running = len(self._running)
        self.stats.waiting = len(self._waiting) + len(self._inbox)
        for gen, chunks in out.items():
            gen.deliver(chunks)

    def _start_next(self) -> None:
        ordered = admission_order(self._waiting, time.monotonic(), self.config.aging_seconds)
        seq, self._waiting = ordered[0], ordered[1:]
        seq.start(self.lm.tokenizer)
        seq.gen.admit()
        self._uid += 1
        seq.uid = self._uid
        self._running[seq.uid] = seq
        kwargs = {
            "max_tokens": seq.max_tokens,
            "sampler": seq.sampler(),
            "logits_processors": seq.processors(),
            "prefill_step_size": self.config.prefill_step_size,
        }
        self._tokens = token_stream(self.lm, seq.inputs, seq.prompt, kwargs)

    def _end(self, seq: Sequence) -> None:
        self._running.pop(cast(int, seq.uid), None)
        self._close_tokens()
        self._count_done(seq)

    def _close_tokens(self) -> None:
        tokens, self._tokens = self._tokens, None
        close = getattr(tokens, "close", None)
        if close is not None:
            close()  # ends generate_step: its KV cache goes with it

    def _drop_cancelled_vision(self, out: dict[Generation, list[GenerationChunk]]) -> None:
        for seq in [s for s in self._waiting if s.gen.cancelled()]:
            self._waiting.remove(seq)
            seq.start(self.lm.tokenizer)
            out[seq.gen].extend(seq.finish("aborted" if seq.gen.aborted else "cancelled"))
            self._count_done(seq)
        for seq in [s for s in self._running.values() if s.gen.cancelled()]:
            out[seq.gen].extend(seq.finish("aborted" if seq.gen.aborted else "cancelled"))
            self._end(seq)

    def _fail_current(self, exc: Exception) -> None:
        failed = list(self._running.values())
        self._running.clear()
        self._close_tokens()
        for seq in failed:
            self.stats.requests_done += 1
            seq.gen.deliver([], error=exc)
