"""A vision model's scheduler: the batch scheduler, with image prompts prefilled here and decoded in the batch.

Everything the text path has holds per sequence (sampler, stop strings, grammar, max_tokens, logprobs, priorities,
cancellation): text-only prompts take the batch's own chunked prefill and the prefix cache unchanged, and an image
prompt is prefilled when it is admitted (engine/vision/batch), then decodes next to them. Images seen before reuse
their encoded features (engine/vision/features), and image prompts are found in the prefix cache under a key in
which each image token carries its image's hash (engine/vision/batch), so a repeated image with the same text
before it reuses the KV of both, and another image still reuses the text before it. Calls the event loop needs on
the model's thread (the processor) run between two steps.

Language models whose caches are not plain attention KV fall back to one sequence at a time (engine/vision/serial).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

import mlx.nn as nn
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import KVCache, make_prompt_cache, trim_prompt_cache

from mlx_manager.engine.block_index import block_hashes
from mlx_manager.engine.errors import QueueFullError
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.prefix_cache import KVCache as LayerCaches
from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.vision import features
from mlx_manager.engine.vision.batch import BatchDecoder, cache_key, first_image, prefill, with_delta

log = logging.getLogger(__name__)
T = TypeVar("T")
_Call = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def batchable(lm: LoadedModel) -> bool:
    """Plain attention KV in the language model, which mlx-lm's batch caches can merge, filter and extend."""
    language = getattr(lm.model, "language_model", None)
    if lm.vision is not None and lm.vision.audio_token_id is not None:
        return False  # the batch prefill merges images only; audio features go through generate_step
    if language is None or not hasattr(lm.model, "get_input_embeddings"):
        return False
    try:
        return all(type(c) is KVCache for c in make_prompt_cache(language))
    except Exception:  # a model that cannot say: the serial path runs anything mlx-vlm runs
        return False


def scheduler_for(lm: LoadedModel, config: SchedulerConfig) -> Scheduler:
    if lm.vision is None:
        return Scheduler(lm, config)
    if batchable(lm):
        return VisionScheduler(lm, config)
    from mlx_manager.engine.vision.serial import SerialVisionScheduler  # it builds on this module

    return SerialVisionScheduler(lm, config)


class VisionScheduler(Scheduler):
    def __init__(self, lm: LoadedModel, config: SchedulerConfig) -> None:
        super().__init__(lm, config)
        self._calls: list[_Call] = []
        self.features = features.FeatureCache(config.vision_feature_cache_bytes)
        if config.vision_feature_cache_bytes > 0:
            features.install(lm.model, self.features)
        self._decoder = BatchDecoder(lm.model) if batchable(lm) else None
        assert lm.vision is not None
        self._image_token = lm.vision.image_token_id
        self._keys: dict[Sequence, list[int]] = {}  # image sequences' prefix-cache keys, until they end
        self._images = 0  # image prompts prefilled this step
        self._busy = False  # sequences were running when this step began

    # --- called from the event loop -----------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run `fn(*args)` on the model thread between two steps (the loop owns that thread)."""
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
            super().run()
        finally:
            self._run_calls()
            self.features.clear()

    def _has_work(self) -> bool:
        return super()._has_work() or bool(self._calls)

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

    def _step(self, batch: BatchGenerator) -> None:
        self._run_calls()
        self._images = 0
        self._busy = bool(self._running)
        if self._inbox or self._waiting or self._running:
            super()._step(batch)

    def _defer(self, batch: BatchGenerator, seq: Sequence) -> bool:
        """An image prompt is prefilled in one piece: while others decode, one a step, so they wait for one only."""
        if self._busy and self._images and getattr(seq.inputs, "pixel_values", None) is not None:
            return True
        return super()._defer(batch, seq)

    def _new_batch(self) -> BatchGenerator:
        # No speculation or adapters here: the decoder adds each row's multimodal positions.
        assert self._decoder is not None
        return BatchGenerator(
            cast(nn.Module, self._decoder),
            completion_batch_size=self.config.max_num_seqs,
            prefill_batch_size=self.budget.generator_batch,
            prefill_step_size=self.config.prefill_step_size,
        )

    def _insert(self, batch: BatchGenerator, seq: Sequence, later: list[Sequence], chunk: int) -> None:
        if getattr(seq.inputs, "pixel_values", None) is None:  # text: the batch's own prefill
            super()._insert(batch, seq, later, chunk)
            assert seq.uid is not None
            cache, _ = batch.extract_cache([seq.uid])[seq.uid]
            if self._decoder is not None and self._decoder.mrope:
                cache[:] = with_delta(cache)  # a prefix-cache hit's layers are plain: give it its (zero) delta
            return
        self._insert_image(batch, seq)

    def _insert_image(self, batch: BatchGenerator, seq: Sequence) -> None:
        seq.start(self.lm.tokenizer)
        seq.gen.admit()
        self._images += 1
        key = cache_key(seq.prompt, self._image_token, seq.inputs)
        self._keys[seq] = key
        end = len(seq.prompt) - 1
        bs = self.config.prefix_block_size
        match = self.tiers.lookup(key, block_hashes(key, bs))  # at most all but the last token
        if seq.index == 0:
            seq.gen.usage.cached_tokens = match.length
        self.stats.prompt_tokens_computed += len(seq.prompt) - match.length
        assert self._decoder is not None
        cache = with_delta(match.cache if match.cache is not None else self._decoder.make_cache())
        delta = prefill(self.lm.model, seq.inputs, cache, match.length, self.config.prefill_step_size)
        if seq.params.cache and self.tiers.enabled and end - match.length >= bs:
            self._store(key[:end], _snapshot(cache, end))  # found by the next request with this text and image
        cache = with_delta(cache, delta)
        (uid,) = batch.insert_segments(
            [[seq.prompt[-1:]]],
            max_tokens=[seq.max_tokens],
            caches=[cache],
            all_tokens=[seq.prompt[:-1]],
            samplers=[seq.sampler()],
            logits_processors=[seq.processors()],
            stop_sequences=[self._no_stop if seq.params.ignore_eos else self._stop_tokens],
        )
        seq.uid = uid
        self._running[uid] = seq

    def _retire(self, batch: BatchGenerator, seq: Sequence, cache: Any, tokens: Any) -> None:
        """An image sequence's KV is stored under its cache key (engine/vision/batch), not its token ids."""
        key = self._keys.pop(seq, None)
        if key is not None and seq.uid is not None and cache is None:  # ended by a stop string: still in the batch
            cache, tokens = batch.remove([seq.uid], return_prompt_caches=True).get(seq.uid, (None, None))
        if key is not None and tokens:
            tokens = [*key[:-1], *list(tokens)[len(key) - 1 :]]
        super()._retire(batch, seq, cache, tokens)

    def _fail_all(self, exc: Exception) -> None:
        self._keys.clear()
        super()._fail_all(exc)

    def _count_done(self, seq: Sequence) -> None:
        self._keys.pop(seq, None)  # a cancelled image sequence
        super()._count_done(seq)

    def _store(self, tokens: list[int], cache: LayerCaches) -> None:
        """Token ids of images say nothing of the image: keep only the text before the first one (a cancelled
        image sequence); image sequences that finish are stored under their cache key."""
        text = first_image(tokens, self._image_token)
        if text < len(tokens):
            if text < self.config.prefix_block_size:
                return
            trim_prompt_cache(cache, len(tokens) - text)
            tokens = tokens[:text]
        super()._store(tokens, [_plain(c) for c in cache])


def _plain(layer: Any) -> Any:
    if type(layer) is KVCache:
        return layer
    out = KVCache()
    out.keys, out.values, out.offset = layer.keys, layer.values, layer.offset
    return out


def _snapshot(cache: LayerCaches, n: int) -> LayerCaches:
    """The first `n` tokens of a sequence's plain KV, as new layer objects (the prefill goes on in `cache`)."""
    out = []
    for layer in cache:
        copy = KVCache()
        copy.keys, copy.values = layer.keys[..., :n, :], layer.values[..., :n, :]
        copy.offset = n
        out.append(copy)
    return out
