"""The batched vision path against the one-at-a-time one (mlx-vlm's generate_step), its RoPE-delta caches, and the
image-feature cache, on the tiny Qwen2-VL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.cache import KVCache
from PIL import Image

from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.types import ChatPrompt, SamplingParams
from mlx_manager.engine.vision import scheduler as vision_scheduler
from mlx_manager.engine.vision.batch import PSEUDO_BASE, BatchDecoder, DeltaKVCache, cache_key
from mlx_manager.engine.vision.features import FeatureCache, content_key
from mlx_manager.engine.vision.inputs import VisionInputs
from mlx_manager.testing.tiny_vlm import NAME
from tests.engine.test_scheduler import run_config

T = TypeVar("T")
GREEDY = SamplingParams(temperature=0, max_tokens=20)


def picture(seed: int, width: int = 56, height: int = 56) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def prompt(i: int, image: bool = True) -> ChatPrompt:
    content: list[dict[str, Any]] = [{"type": "image"}] if image else []
    content.append({"type": "text", "text": f"Describe picture {i}, please."})
    system = {"role": "system", "content": "You look closely at pictures. " * 4}
    messages = [system, {"role": "user", "content": content}]
    return ChatPrompt(messages=messages, images=[picture(i, 56 * (1 + i % 3))] if image else [])


async def collect(gen: Generation) -> list[int]:
    ids: list[int] = []
    async for chunk in gen:
        ids += chunk.token_ids
    return ids


def run(folder: Path, body: Callable[[Engine], Awaitable[T]], **sched: Any) -> T:
    scheduler = SchedulerConfig(prefix_block_size=4, **sched)
    config = EngineConfig(
        model_dirs=[folder.parent],
        hf_cache=None,
        pool=PoolConfig(max_models=1, memory_budget_bytes=1 << 32, scheduler=scheduler),
    )
    return run_config(config, body)


def outputs(folder: Path, together: bool) -> tuple[list[list[int]], str]:
    async def body(engine: Engine) -> tuple[list[list[int]], str]:
        prompts = [prompt(i, image=i != 2) for i in range(5)]
        if together:
            gens = [await engine.generate(NAME, p, GREEDY) for p in prompts]
            out = list(await asyncio.gather(*(collect(g) for g in gens)))
        else:
            out = [await collect(await engine.generate(NAME, p, GREEDY)) for p in prompts]
        return out, type(engine.pool.entries()[0].scheduler).__name__

    return run(folder, body)


def test_greedy_output_of_a_batch_of_image_and_text_requests_equals_mlx_vlm_one_at_a_time(
    tiny_vlm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batched, kind = outputs(tiny_vlm, together=True)
    assert kind == "VisionScheduler"
    monkeypatch.setattr(vision_scheduler, "batchable", lambda lm: False)
    serial, kind = outputs(tiny_vlm, together=False)
    assert kind == "SerialVisionScheduler"
    assert batched == serial
    assert len({tuple(ids) for ids in batched}) > 2  # the images make a difference


def test_rope_deltas_follow_their_rows_through_merge_filter_extend_and_extract() -> None:
    def row(delta: int, length: int) -> DeltaKVCache:
        cache = DeltaKVCache(delta)
        cache.update_and_fetch(mx.ones((1, 1, length, 2)) * delta, mx.ones((1, 1, length, 2)))
        return cache

    plain = KVCache()
    plain.update_and_fetch(mx.zeros((1, 1, 2, 2)), mx.zeros((1, 1, 2, 2)))
    batch = DeltaKVCache.merge([row(-3, 4), plain, row(-7, 6)])
    assert batch.deltas.tolist() == [-3, 0, -7]
    batch.filter([0, 2])
    assert batch.deltas.tolist() == [-3, -7]
    batch.extend(DeltaKVCache.merge([row(-1, 3)]))
    assert batch.deltas.tolist() == [-3, -7, -1]
    out = batch.extract(1)
    assert isinstance(out, DeltaKVCache) and out.delta == -7 and out.offset == 6
    assert out.keys is not None and out.keys[0, 0, :, 0].tolist() == [-7.0] * 6
    text = DeltaKVCache.merge([plain]).extract(0)
    assert type(text) is KVCache  # a text row's cache is stored and reused like any other


def test_the_feature_cache_keeps_the_most_recent_within_its_byte_budget_and_trims_under_pressure() -> None:
    cache = FeatureCache(max_bytes=3 * 400)
    keys = [content_key(mx.full((10, 10), i, dtype=mx.float32)) for i in range(4)]
    assert len(set(keys)) == 4 and content_key(mx.full((10, 10), 0, dtype=mx.float32)) == keys[0]
    for i, key in enumerate(keys[:3]):
        cache.put(key, mx.zeros((100,), dtype=mx.float32) + i)  # 400 bytes each
    assert cache.get(keys[0]) is not None  # now the most recent
    cache.put(keys[3], mx.zeros((100,), dtype=mx.float32))
    assert cache.get(keys[1]) is None and cache.get(keys[0]) is not None
    assert cache.stats.bytes == 1200 and cache.stats.evictions == 1 and cache.stats.entries == 3
    cache.put(content_key("too big"), mx.zeros((400,), dtype=mx.float32))
    assert cache.stats.bytes == 1200  # over the whole budget: not kept
    grid = mx.array([[1, 2, 2]])
    assert content_key(mx.zeros((4,)), grid) != content_key(mx.zeros((4,)), grid * 2)  # settings are in the key
    assert cache.trim(400) == 800 and cache.bytes == 400 and cache.get(keys[0]) is not None  # the most recent stays


def pictures_prompt(*images: Image.Image) -> ChatPrompt:
    content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
    content.append({"type": "text", "text": "Compare these."})
    return ChatPrompt(messages=[{"role": "user", "content": content}], images=list(images))


def test_images_of_one_request_are_encoded_and_found_again_one_by_one(tiny_vlm: Path) -> None:
    first, second = picture(50), picture(51, 112, 56)

    async def body(engine: Engine) -> tuple[list[int], list[int]]:
        both = await collect(await engine.generate(NAME, pictures_prompt(first, second), GREEDY))
        scheduler = engine.pool.entries()[0].scheduler
        assert isinstance(scheduler, vision_scheduler.VisionScheduler)
        stats = scheduler.features.stats
        counts = [stats.hits, stats.misses]
        await collect(await engine.generate(NAME, pictures_prompt(second), GREEDY))  # in other company
        return both, [*counts, stats.hits, stats.misses]

    cached, counts = run(tiny_vlm, body)
    assert counts == [0, 2, 1, 2]
    uncached, counts = run(tiny_vlm, body, vision_feature_cache_bytes=0)
    assert counts == [0, 0, 0, 0] and uncached == cached  # encoded one by one or together: the same answer


def test_each_image_keys_its_own_tokens_in_the_prefix_cache() -> None:
    image = 9
    a, b = mx.full((2, 4), 1.0), mx.full((3, 4), 2.0)
    grid_a, grid_b = mx.array([[1, 2, 1]]), mx.array([[1, 3, 1]])
    both = VisionInputs(ids=[], input_ids=mx.array([[0]]), pixel_values=mx.concatenate([a, b]),
                        extra={"image_grid_thw": mx.concatenate([grid_a, grid_b])})  # fmt: skip
    only_b = VisionInputs(ids=[], input_ids=mx.array([[0]]), pixel_values=b, extra={"image_grid_thw": grid_b})
    key = cache_key([1, image, image, 2, image, image, image, 3], image, both)
    alone = cache_key([5, image, image, image, 3], image, only_b)
    assert [key[0], key[3], key[7]] == [1, 2, 3] and all(k >= PSEUDO_BASE for k in key[1:3] + key[4:7])
    assert key[4:7] == alone[1:4]  # the same image, the same ids, whatever came before
    assert len(set(key[1:3] + key[4:7])) == 5


def test_while_others_decode_image_prompts_that_wait_together_join_one_a_step(
    tiny_vlm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined: list[tuple[int, int]] = []  # (scheduler step, prompts waiting) as each image prompt is prefilled
    insert = vision_scheduler.VisionScheduler._insert_image
    decode = BatchDecoder.__call__

    def recording(self: vision_scheduler.VisionScheduler, batch: Any, seq: Any) -> None:
        joined.append((self.stats.steps, sum(s.inputs is not None for s in self._waiting)))
        insert(self, batch, seq)

    def slow(self: BatchDecoder, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.15)  # room for all three requests to arrive within one step, even on a loaded machine
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(vision_scheduler.VisionScheduler, "_insert_image", recording)
    monkeypatch.setattr(BatchDecoder, "__call__", slow)

    async def body(engine: Engine) -> None:
        long = await engine.generate(NAME, prompt(2, image=False), SamplingParams(temperature=0, max_tokens=400))
        stream = long.__aiter__()
        await stream.__anext__()  # it decodes now
        gens = await asyncio.gather(*(engine.generate(NAME, prompt(20 + i), GREEDY) for i in range(3)))
        await asyncio.gather(*(collect(g) for g in gens))
        long.cancel()

    run(tiny_vlm, body)
    assert len(joined) == 3 and max(waiting for _, waiting in joined) >= 2  # they waited together
    assert len({step for step, _ in joined}) == 3  # and joined in three steps
