"""A vision model's scheduler: one sequence at a time through mlx-vlm's generate_step, on the model's thread.

Why not a batch: the image prefill and Qwen's mRoPE position state live in the model object, and mlx-vlm's own
batch generator takes one sampler for the whole batch, while every request here keeps its own sampling. So
sequences queue (with the same admission limits, priorities and aging as the batch scheduler) and run one after
another; each token still goes through the same Sequence (detokenizer, stop strings, output parser, logprobs)
and the same Generation, so the HTTP side cannot tell the difference. Image prompts skip the prefix cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import mlx.core as mx

from mlx_manager.engine.errors import QueueFullError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig, admission_order
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.types import GenerationChunk
from mlx_manager.engine.vision.inputs import token_stream

log = logging.getLogger(__name__)
T = TypeVar("T")
_Call = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def scheduler_for(lm: LoadedModel, config: SchedulerConfig) -> Scheduler:
    return VisionScheduler(lm, config) if lm.vision is not None else Scheduler(lm, config)


class VisionScheduler(Scheduler):
    def __init__(self, lm: LoadedModel, config: SchedulerConfig) -> None:
        super().__init__(lm, config)
        self._calls: list[_Call] = []
        self._tokens: Iterator[tuple[int, mx.array]] | None = None  # the running sequence's generate_step
        self._uid = 0

    @property
    def running_slots(self) -> int:
        return 1  # one sequence at a time (module docstring)

    # --- called from the event loop -----------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run `fn(*args)` on the model thread between two decode steps (the loop owns that thread)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise QueueFullError("The model is being unloaded; retry shortly.", retry_after=1)
            self._calls.append((future, fn, args))
            self._cond.notify()
        return asyncio.wrap_future(future)

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

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not (self._inbox or self._waiting or self._running or self._calls):
                if self._stopping:
                    return False
                self._cond.wait(timeout=1.0)
            self._waiting.extend(self._inbox)
            self._inbox.clear()
        return True

    def _run_calls(self) -> None:
        with self._cond:
            calls, self._calls = self._calls, []
        for future, fn, args in calls:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

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
