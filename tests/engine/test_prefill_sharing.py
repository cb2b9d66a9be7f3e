"""Prefill is never thrown away and never done twice at once: published when computed, kept on cancel, shared
between concurrent requests; with real tiny models through the engine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from mlx_manager.engine.backend import Run
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.scheduler import Scheduler
from mlx_manager.engine.types import SamplingParams, TextPrompt
from tests.engine.test_scheduler import collect, run_engine

GREEDY = SamplingParams(temperature=0, max_tokens=12)
SHARED = tuple(range(300, 700))  # a 400-token "system prompt"


def ask(tail: tuple[int, ...]) -> TextPrompt:
    return TextPrompt(token_ids=SHARED + tail)


def scheduler(engine: Engine) -> Scheduler:
    sched = engine.pool.entries()[0].scheduler
    assert sched is not None
    return sched


def test_a_request_cancelled_at_its_first_token_leaves_its_prompt_in_the_cache(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        cold, _, _ = await collect(await engine.generate("tiny-llama", ask((5, 6, 7)), GREEDY))
        scheduler(engine).cache.clear()
        victim = await engine.generate("tiny-llama", ask((5, 6, 7)), replace(GREEDY, max_tokens=500))
        stream = victim.__aiter__()
        await stream.__anext__()
        victim.cancel()
        async for _ in stream:
            pass
        again = await engine.generate("tiny-llama", ask((5, 6, 7)), GREEDY)
        ids, _, _ = await collect(again)
        assert again.usage.cached_tokens == len(SHARED) + 2  # all but the last prompt token
        assert ids == cold

    run_engine(tiny_models_dir, body, prefix_block_size=16)


def test_a_request_cancelled_while_waiting_for_decode_keeps_its_computed_prefill(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        victim = await engine.generate("tiny-llama", ask((9,)), replace(GREEDY, max_tokens=500))
        stream = victim.__aiter__()
        await stream.__anext__()
        victim.cancel()
        async for _ in stream:
            pass
        other = await engine.generate("tiny-llama", ask((1, 2, 3)), GREEDY)
        await collect(other)
        assert other.usage.cached_tokens >= len(SHARED)

    run_engine(tiny_models_dir, body, prefix_block_size=16)


def test_concurrent_requests_with_a_new_shared_prefix_prefill_it_once(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        alone = [await collect(await engine.generate("tiny-llama", ask((i, i + 1)), GREEDY)) for i in (11, 21)]
        scheduler(engine).cache.clear()
        before = scheduler(engine).stats.prompt_tokens_computed
        gens = [await engine.generate("tiny-llama", ask((i, i + 1)), GREEDY) for i in (11, 21)]
        together = await asyncio.gather(*(collect(g) for g in gens))
        assert together == alone  # waiting for the other's prefill changes nothing in the output
        cached = sorted(g.usage.cached_tokens for g in gens)
        assert cached[0] == 0 and cached[1] >= len(SHARED) - 16
        computed = scheduler(engine).stats.prompt_tokens_computed - before
        assert computed == 2 * (len(SHARED) + 2) - cached[1]

    run_engine(tiny_models_dir, body, prefix_block_size=16, prefill_step_size=64)


def test_a_request_arriving_during_a_long_prefill_waits_for_the_shared_part(tiny_models_dir: Path) -> None:
    long_tail = tuple(range(100, 300)) * 3

    async def body(engine: Engine) -> None:
        first = await engine.generate("tiny-llama", ask(long_tail), GREEDY)
        task = asyncio.create_task(collect(first))
        await asyncio.sleep(0)  # the first is admitted and prefilling in chunks of 64
        second = await engine.generate("tiny-llama", ask((4, 5)), GREEDY)
        await collect(second)
        await task
        assert second.usage.cached_tokens >= len(SHARED) - 16

    run_engine(tiny_models_dir, body, prefix_block_size=16, prefill_step_size=64)


def test_n_sequences_of_one_request_prefill_their_prompt_once(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        gen = await engine.generate("tiny-llama", ask((3,)), GREEDY, Run(n=3))
        await collect(gen)
        # The first sequence prefills the prompt; the other two wait for it and compute the last block or less.
        assert scheduler(engine).stats.prompt_tokens_computed < len(SHARED) + 1 + 2 * 17
        assert gen.usage.cached_tokens == 0  # the client's prompt was computed, not found in a cache

    run_engine(tiny_models_dir, body, prefix_block_size=16)


def test_cache_false_writes_nothing_but_still_reuses(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        private = replace(GREEDY, cache=False)
        await collect(await engine.generate("tiny-llama", ask((1,)), private))
        cache = scheduler(engine).cache
        assert len(cache) == 0
        await collect(await engine.generate("tiny-llama", ask((2,)), GREEDY))
        entries = len(cache)
        again = await engine.generate("tiny-llama", ask((3,)), private)
        await collect(again)
        assert again.usage.cached_tokens >= len(SHARED) - 16 and len(cache) == entries

    run_engine(tiny_models_dir, body, prefix_block_size=16)
