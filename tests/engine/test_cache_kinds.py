"""Models whose cache is not plain attention KV: a hybrid (Gated DeltaNet recurrent state + attention, as in
Qwen3.5) and Gemma 3 with a 16-token sliding window. Each states how its cache is reused, and a reused prefix
gives the same greedy answer as computing it, in RAM, across concurrent requests, after a cancel and from disk."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.models.cache import ChunkedKVCache, KVCache

from mlx_manager.engine.cache_support import cache_support
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.scheduler import Scheduler
from mlx_manager.engine.types import SamplingParams, TextPrompt
from mlx_manager.testing.tiny_models import VARIANTS, write_tiny_variant
from tests.conftest import asset_cache
from tests.engine.test_scheduler import collect, run_engine

GREEDY = SamplingParams(temperature=0, max_tokens=10)
SHARED = tuple(range(300, 500))  # past the 16-token window; 12 blocks of 16 and a part
TAILS = {name: tuple(range(start, start + 9)) for name, start in (("a", 600), ("b", 620), ("c", 640))}
BLOCK = 16


@pytest.fixture(scope="module")
def variants_dir() -> Path:
    folder = asset_cache() / "tiny-variants"
    for family in VARIANTS:
        write_tiny_variant(folder, family)
    return folder


def ask(tail: str) -> TextPrompt:
    return TextPrompt(token_ids=SHARED + TAILS[tail])


def scheduler(engine: Engine) -> Scheduler:
    sched = engine.pool.entries()[0].scheduler
    assert sched is not None
    return sched


def cold_answers(folder: Path, model: str) -> dict[str, list[int]]:
    """Each prompt computed in full: the cache off."""

    async def body(engine: Engine) -> dict[str, list[int]]:
        return {t: (await collect(await engine.generate(model, ask(t), GREEDY)))[0] for t in TAILS}

    return run_engine(folder, body, prefix_cache_bytes=0)


def test_each_model_states_how_its_cache_is_reused(variants_dir: Path, tiny_models_dir: Path) -> None:
    async def support(engine: Engine, model: str) -> tuple[str, dict[str, int]]:
        await collect(await engine.generate(model, ask("a"), GREEDY))
        tiers = next(e for e in engine.pool.entries() if e.info.id == model).scheduler.tiers  # type: ignore[union-attr]
        return tiers.support.reuse, tiers.support.layers

    async def variants(engine: Engine) -> list[tuple[str, dict[str, int]]]:
        return [await support(engine, m) for m in ("tiny-qwen3.5", "tiny-gemma3-sliding")]

    hybrid, sliding = run_engine(variants_dir, variants)
    assert hybrid == ("exact", {"ArraysCache": 1, "KVCache": 1})
    assert sliding == ("exact", {"RotatingKVCache": 1, "KVCache": 1})
    assert run_engine(tiny_models_dir, lambda e: support(e, "tiny-llama")) == ("any-prefix", {"KVCache": 2})


def test_a_cache_that_cannot_be_stored_is_not_cached() -> None:
    class Chunked:
        def make_cache(self) -> list[Any]:
            return [ChunkedKVCache(64), KVCache()]

    support = cache_support(Chunked())
    assert support.reuse == "off" and "ChunkedKVCache" in support.reason


@pytest.mark.parametrize("model", ["tiny-qwen3.5", "tiny-gemma3-sliding"])
def test_a_reused_prefix_answers_as_computing_it_does(variants_dir: Path, model: str) -> None:
    cold = cold_answers(variants_dir, model)

    async def body(engine: Engine) -> None:
        got = {}
        cached = {}
        for tail in ("a", "b", "c", "a"):
            gen = await engine.generate(model, ask(tail), GREEDY)
            got[tail] = (await collect(gen))[0]
            cached[tail] = gen.usage.cached_tokens
            assert got[tail] == cold[tail], tail
        # b left a's exact states where the prompts diverged, so c starts from a block boundary inside SHARED;
        # a again starts from its own state one token before its end.
        assert cached["c"] == len(SHARED) // BLOCK * BLOCK
        assert cached["a"] == len(SHARED) + len(TAILS["a"]) - 1

    run_engine(variants_dir, body, prefix_block_size=BLOCK, prefill_step_size=64)


@pytest.mark.parametrize("model", ["tiny-qwen3.5", "tiny-gemma3-sliding"])
def test_concurrent_requests_share_one_prefill_of_the_common_part(variants_dir: Path, model: str) -> None:
    cold = cold_answers(variants_dir, model)

    async def body(engine: Engine) -> None:
        gens = {t: await engine.generate(model, ask(t), GREEDY) for t in ("a", "b")}
        results = await asyncio.gather(*(collect(g) for g in gens.values()))
        assert {t: r[0] for t, r in zip(gens, results, strict=True)} == {t: cold[t] for t in gens}
        assert sorted(g.usage.cached_tokens for g in gens.values()) == [0, len(SHARED) // BLOCK * BLOCK]

    run_engine(variants_dir, body, prefix_block_size=BLOCK, prefill_step_size=64)


def test_a_cancelled_hybrid_request_is_reused_by_its_retry(variants_dir: Path) -> None:
    cold = cold_answers(variants_dir, "tiny-qwen3.5")

    async def body(engine: Engine) -> None:
        victim = await engine.generate("tiny-qwen3.5", ask("b"), replace(GREEDY, max_tokens=300))
        stream = victim.__aiter__()
        await stream.__anext__()
        victim.cancel()
        async for _ in stream:
            pass
        retry = await engine.generate("tiny-qwen3.5", ask("b"), GREEDY)
        assert (await collect(retry))[0] == cold["b"]
        assert retry.usage.cached_tokens == len(SHARED) + len(TAILS["b"]) - 1

    run_engine(variants_dir, body, prefix_block_size=BLOCK)


@pytest.mark.parametrize("model", ["tiny-qwen3.5", "tiny-gemma3-sliding"])
def test_recurrent_and_sliding_window_states_come_back_from_disk(
    variants_dir: Path, tmp_path: Path, model: str
) -> None:
    cold = cold_answers(variants_dir, model)
    disk = {"disk_cache_dir": tmp_path / "kv", "disk_cache_bytes": 1 << 30, "prefix_block_size": BLOCK}

    async def first(engine: Engine) -> None:
        await collect(await engine.generate(model, ask("a"), GREEDY))

    async def second(engine: Engine) -> tuple[list[int], int, str | None]:
        gen = await engine.generate(model, ask("a"), GREEDY)
        ids, _, _ = await collect(gen)
        return ids, gen.usage.cached_tokens, scheduler(engine).cache.stats.recent[-1]["tier"]

    run_engine(variants_dir, first, **disk)  # unloading at the end writes the RAM tier to disk
    ids, cached, tier = run_engine(variants_dir, second, **disk)
    assert ids == cold["a"] and tier == "disk"
    assert cached == len(SHARED) + len(TAILS["a"]) - 1
