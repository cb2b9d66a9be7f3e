"""Continuous batching for one model on mlx-lm's BatchGenerator, with admission control and a prefix cache.

Runs on the model's own thread. Requests join and leave the batch at every step; prompts are prefilled in
chunks next to the decode steps, at most `step_prefill_tokens` a step (engine/step_budget), so arriving prompts
do not stall decoding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.nn as nn
from mlx_lm.generate import BatchGenerator, StopSequences

from mlx_manager.config import default
from mlx_manager.engine.adapters.lora import RowModel
from mlx_manager.engine.cache_tiers import NOT_CACHED, TieredCache, open_tiers
from mlx_manager.engine.errors import InvalidRequestError, QueueFullError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.kv_quant import make_cache
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.prefill_sharing import Prefill, PrefillSharing
from mlx_manager.engine.prefix_cache import KVCache, Match, PrefixCache
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.speculative import (
    LOOKUP,
    Speculation,
    SpeculativeBatchGenerator,
    SpeculativeConfig,
    load_draft_model,
)
from mlx_manager.engine.step_budget import StepBudget, StepRecord
from mlx_manager.engine.types import GenerationChunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerConfig:
    # The settings' defaults (config.py); app.py passes the configured values.
    max_num_seqs: int = default("max_num_seqs")
    prefill_batch_size: int = 8
    prefill_step_size: int = default("prefill_step_size")
    # Prompt tokens prefilled per step next to the running decode (engine/step_budget); 0: no limit.
    step_prefill_tokens: int = default("step_prefill_tokens")
    max_waiting: int = default("max_waiting")
    aging_seconds: float = 2.0  # waiting this long raises a request by one priority level
    prefix_cache_bytes: int = default("prefix_cache_bytes")
    prefix_block_size: int = default("prefix_block_size")
    # The cold tier (engine/disk_cache): off without a folder or with 0 bytes.
    disk_cache_dir: Path | None = None
    disk_cache_bytes: int = 0
    disk_write_delay: float = 5.0  # an entry still in RAM (not replaced by a longer one) this long goes to disk
    speculative: SpeculativeConfig = LOOKUP  # engine/speculative
    # A vision model's encoded images kept for reuse (engine/vision/features).
    vision_feature_cache_bytes: int = default("vision_feature_cache_bytes")


@dataclass
class SchedulerStats:
    requests_done: int = 0
    requests_cancelled: int = 0
    tokens_generated: int = 0
    steps: int = 0
    running: int = 0
    waiting: int = 0
    # Prompt tokens prefilled (not taken from the cache), to see that a shared prefix is computed once.
    prompt_tokens_computed: int = 0


def admission_order(waiting: list[Sequence], now: float, aging_seconds: float) -> list[Sequence]:
    """Lower priority values go first; every `aging_seconds` waited lowers a request's value by one, so
    background jobs cannot starve behind a stream of interactive ones."""
    return sorted(waiting, key=lambda s: (s.priority - (now - s.arrival) / aging_seconds, s.arrival))


class Scheduler:
    def __init__(self, lm: LoadedModel, config: SchedulerConfig) -> None:
        self.lm = lm
        self.config = config
        self.cache = PrefixCache(config.prefix_cache_bytes, config.prefix_block_size)
        self.stats = SchedulerStats()
        self._cond = threading.Condition()
        self._inbox: list[Sequence] = []
        self._waiting: list[Sequence] = []
        self._running: dict[int, Sequence] = {}
        self._stopping = False
        self._stop_tokens = StopSequences([[t] for t in sorted(lm.stop_token_ids)])
        self.tiers = TieredCache(self.cache, None, NOT_CACHED, config.disk_write_delay)
        self.sharing = PrefillSharing(config.prefix_block_size, config.prefill_step_size, trimmable=False)
        self._have: dict[Sequence, int] = {}
        self._no_stop = StopSequences()
        self.budget = StepBudget(config.step_prefill_tokens, config.prefill_step_size, config.prefill_batch_size)
        self.step_log: deque[StepRecord] = deque(maxlen=4096)  # recent steps, to see decode go on during prefill
        self.spec = Speculation(config.speculative)

    # --- called from the event loop -----------------------------------------------------------

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue a request's sequences. The model holds `running_slots` running plus max_waiting queued: a request
        with more sequences than that could never be admitted (a 400), one that does not fit now is a 429."""
        capacity = self.running_slots + self.config.max_waiting
        if len(seqs) > capacity:
            raise InvalidRequestError(
                f"n={len(seqs)} is more sequences than '{self.lm.info.id}' can ever hold at once: {capacity}"
                f" ({self.running_slots} running, max_num_seqs, and {self.config.max_waiting} queued, max_waiting)."
                " Lower n.",
                param="n",
            )
        with self._cond:
            queued = len(self._inbox) + len(self._waiting)
            if self._stopping:
                raise QueueFullError("The model is being unloaded; retry shortly.", retry_after=1)
            if queued + len(self._running) + len(seqs) > capacity:
                raise QueueFullError(
                    f"The server is at capacity: {queued} requests are waiting for '{self.lm.info.id}'"
                    f" (max_waiting={self.config.max_waiting}). Retry shortly.",
                    retry_after=max(1, queued // max(self.config.max_num_seqs, 1)),
                )
            self._inbox.extend(seqs)
            self.stats.waiting = queued + len(seqs)
            self._cond.notify()

    @property
    def tokens_generated_live(self) -> int:
        """Tokens generated so far, those of running requests too (stats count a request's when it ends)."""
        return self.stats.tokens_generated + sum(seq.produced for seq in list(self._running.values()))

    @property
    def running_slots(self) -> int:
        """Sequences decoded together (the vision scheduler runs one)."""
        return self.config.max_num_seqs

    def cancel_all(self) -> None:
        with self._cond:
            for seq in [*self._inbox, *self._waiting, *self._running.values()]:
                seq.gen.cancel()

    def abort_all(self) -> int:
        """End every request now, each with a final chunk; returns how many there were."""
        with self._cond:
            gens = {seq.gen for seq in [*self._inbox, *self._waiting, *self._running.values()]}
            for gen in gens:
                gen.abort()
            self._cond.notify()
        return len(gens)

    def stop(self) -> None:
        """Finish what was accepted, then end the loop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    # --- the model thread ---------------------------------------------------------------------

    def _new_batch(self) -> BatchGenerator:
        return SpeculativeBatchGenerator(
            self._model(),
            self.spec,
            completion_batch_size=self.config.max_num_seqs,
            prefill_batch_size=self.budget.generator_batch,
            prefill_step_size=self.config.prefill_step_size,
        )

    def _open_cache(self) -> None:
        cfg = self.config
        self.tiers = open_tiers(self.lm, self.cache, cfg.disk_cache_dir, cfg.disk_cache_bytes, cfg.disk_write_delay)
        self.sharing = PrefillSharing(cfg.prefix_block_size, cfg.prefill_step_size, self.tiers.support.trimmable)

    def run(self) -> None:
        self._open_cache()
        draft = self.config.speculative.draft_model
        if draft is not None and self.config.speculative.mode == "draft":
            self.spec.draft_model = load_draft_model(draft, self.lm.tokenizer)
        batch = self._new_batch()
        try:
            while self._wait_for_work():
                try:
                    self._step(batch)
                except Exception as exc:  # one bad step must not take the model down with it
                    log.exception("Batch step failed on %s; failing its requests", self.lm.info.id)
                    self._fail_all(exc)
                    batch.close()
                    batch = self._new_batch()
        finally:
            batch.close()
            self.tiers.unload()  # what RAM holds goes to disk, to be found after a reload or restart
            self.cache.clear()

    def _fail_all(self, exc: Exception) -> None:
        with self._cond:
            failed = [*self._running.values(), *self._waiting, *self._inbox]
            self._running.clear()
            self._waiting.clear()
            self._inbox.clear()
            self.sharing.clear()
        for gen in {s.gen for s in failed}:
            gen.deliver([], error=exc)

    def _has_work(self) -> bool:
        """Under the lock: anything for the loop to do (a subclass adds its own queues)."""
        return bool(self._inbox or self._waiting or self._running)

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not self._has_work():
                if self._stopping:
                    return False
                self._cond.wait(timeout=1.0)
            self._waiting.extend(self._inbox)
            self._inbox.clear()
        return True

    def _step(self, batch: BatchGenerator) -> None:
        out: dict[Generation, list[GenerationChunk]] = defaultdict(list)
        self._drop_cancelled(batch, out)
        self._admit(batch)
        if self._running:
            before = [(p, p.computed) for p in self.sharing.running.values()]
            started = time.perf_counter()
            prompt_responses, responses = batch.next()
            seconds = time.perf_counter() - started
            self.stats.steps += 1
            self._share_progress(batch, prompt_responses)
            advanced = [p.computed - c for p, c in before if p.computed > c]
            self.step_log.append(StepRecord(len(responses), sum(advanced), len(advanced), seconds))
            for r in responses:
                seq = self._running.get(r.uid)
                if seq is None:
                    continue
                stop_token = r.finish_reason == "stop"
                chunks = seq.on_token(r.token, r.logprobs, stop_token)
                if not seq.finished and r.finish_reason == "length":
                    chunks += seq.finish("length")
                if seq.finished:
                    self._retire(batch, seq, r.prompt_cache, r.all_tokens)
                out[seq.gen].extend(chunks)
        self.stats.running = len(self._running)
        self.stats.waiting = len(self._waiting) + len(self._inbox)
        for gen, chunks in out.items():
            gen.deliver(chunks)

    def _admit(self, batch: BatchGenerator) -> None:
        room = self.config.max_num_seqs - len(self._running)
        if room <= 0 or not self._waiting:
            return
        ordered = admission_order(self._waiting, time.monotonic(), self.config.aging_seconds)
        kept: list[Sequence] = []
        self._have.clear()
        full = False  # the step's prefill budget is spent: the rest wait, in order, so long prompts are not passed
        decoding = sum(uid not in self.sharing.running for uid in self._running)  # done prefilling
        waiting = len(ordered)
        for i, seq in enumerate(ordered):
            if full or room <= 0 or self._defer(batch, seq):
                kept.append(seq)
                continue
            need = len(seq.prompt) - 1 - self._cached(seq)
            chunk = self.budget.chunk(need, self.sharing.running.values(), decoding, waiting)
            if not chunk:
                full = True
                kept.append(seq)
                continue
            self._insert(batch, seq, ordered[i + 1 : i + 1 + self.config.max_num_seqs], chunk)
            room -= 1
        self._waiting = kept

    def _model(self) -> nn.Module:
        """The model as the batch calls it: each row with its sequence's LoRA adapter (engine/adapters)."""
        return cast(nn.Module, RowModel(self.lm.model, lambda: self.lm.adapters, self._adapter_of))

    def _adapter_of(self, uid: int) -> str | None:
        seq = self._running.get(uid)
        return seq.adapter if seq is not None else None

    def _cached(self, seq: Sequence) -> int:
        """Prompt tokens of `seq` the cache holds, looked up once per admission round."""
        if seq.adapter is not None:  # the cache holds the base's KV; an adapter's differs (it stores none)
            return 0
        found = self._have.get(seq)
        if found is None:
            found = self._have[seq] = self.tiers.peek(seq.prompt, self.sharing.hashes(seq))
        return found

    def _defer(self, batch: BatchGenerator, seq: Sequence) -> bool:
        """Hold `seq` back while a running prefill computes a prefix it shares (it then reuses that KV)."""
        found = self.sharing.provider(seq, self._cached(seq)) if seq.adapter is None else None
        if found is None:
            return False
        provider, target = found
        if self.sharing.trimmable and provider.computed >= target:
            self._publish(batch, provider)  # already computed: publish it now and reuse it at once
            return False
        self.sharing.wait_for(provider, target)
        return True

    def _insert(self, batch: BatchGenerator, seq: Sequence, later: list[Sequence], chunk: int) -> None:
        seq.start(self.lm.tokenizer)
        seq.gen.admit()  # no longer queued: the queue's time limit (api/request/limits) no longer applies
        match = self.tiers.lookup(seq.prompt, self.sharing.hashes(seq)) if seq.adapter is None else Match()
        if seq.index == 0:  # n > 1: the others reuse the first one's prefill, which is not the client's saving
            seq.gen.usage.cached_tokens = match.length
        self.stats.prompt_tokens_computed += len(seq.prompt) - match.length
        log.debug(
            "prefix cache for %s: reused %d of %d prompt tokens%s",
            self.lm.info.id,
            match.length,
            len(seq.prompt),
            f" (diverged at token {match.diverged_at})" if match.diverged_at is not None else "",
        )
        store = seq.params.cache and self.tiers.enabled
        later_have = [(s, self._cached(s)) for s in later if not self.sharing.trimmable]
        prefill = self.sharing.plan(seq, match.length, match.diverged_at, later_have, store)
        self.budget.cut(prefill, chunk)
        cache = match.cache
        if cache is None and self.lm.kv.quantized:  # BatchGenerator would make float caches
            cache = make_cache(self.lm.model, self.lm.kv)
        (uid,) = batch.insert_segments(
            [prefill.segments()],
            max_tokens=[seq.max_tokens],
            caches=[cache] if cache is not None else None,
            all_tokens=[seq.prompt[: match.length]],
            samplers=[seq.sampler()],
            logits_processors=[seq.processors()],
            stop_sequences=[self._no_stop if seq.params.ignore_eos else self._stop_tokens],
        )
        seq.uid = uid
        self._running[uid] = seq
        self.sharing.start(uid, prefill)

    def _share_progress(self, batch: BatchGenerator, responses: list[Any]) -> None:
        """Follow each prefill; publish its KV where it is done or where a waiting request needs it."""
        for r in responses:
            prefill = self.sharing.running.get(r.uid)
            if prefill is None:
                continue
            if r.end_of_prompt:  # decoding now: its prompt KV was published at the segment before
                del self.sharing.running[r.uid]
            elif self.sharing.progress(prefill, r.progress[0], r.end_of_segment):
                self._publish(batch, prefill)

    def _publish(self, batch: BatchGenerator, prefill: Prefill) -> None:
        uid = prefill.seq.uid
        got = batch.extract_cache([uid]).get(uid) if uid is not None else None
        if got is not None and len(got[1]) > prefill.start:
            self._store(list(got[1]), got[0])  # a copy: the batch keeps appending to its token list
        self.sharing.published(prefill)

    def _store(self, tokens: list[int], cache: KVCache) -> None:
        self.tiers.store(tokens, cache)

    def _drop_cancelled(self, batch: BatchGenerator, out: dict[Generation, list[GenerationChunk]]) -> None:
        for seq in [s for s in self._waiting if s.gen.cancelled()]:
            self._waiting.remove(seq)
            self.sharing.forget(seq)
            seq.start(self.lm.tokenizer)
            out[seq.gen].extend(seq.finish("aborted" if seq.gen.aborted else "cancelled"))
            self._count_done(seq)
        gone = [s for s in self._running.values() if s.gen.cancelled()]
        if gone:
            # What a cancelled sequence computed stays reusable: agent users interrupt and retry all the time.
            kept = batch.remove([s.uid for s in gone], return_prompt_caches=True)
            for seq in gone:
                del self._running[seq.uid]  # type: ignore[arg-type]
                got = kept.get(seq.uid)
                if got is not None and seq.params.cache and len(got[1]) > self.sharing.reused(seq):
                    self._store(list(got[1]), got[0])
                self.sharing.forget(seq)
                out[seq.gen].extend(seq.finish("aborted" if seq.gen.aborted else "cancelled"))
                self._count_done(seq)

    def _retire(self, batch: BatchGenerator, seq: Sequence, cache: Any, tokens: Any) -> None:
        assert seq.uid is not None
        self._running.pop(seq.uid, None)
        if cache is None:  # ended by a stop string: the batch still holds it
            extracted = batch.remove([seq.uid], return_prompt_caches=True).get(seq.uid)
            cache, tokens = extracted if extracted else (None, None)
        if cache is not None and tokens and seq.params.cache:
            self._store(list(tokens), cache)
        self.sharing.forget(seq)
        self._count_done(seq)

    def _count_done(self, seq: Sequence) -> None:
        seq.gen.usage.completion_tokens += seq.produced
        self.stats.tokens_generated += seq.produced
        self.stats.requests_done += 1
        self.stats.requests_cancelled += seq.gen.cancelled()
