"""Continuous batching with real tiny models: equivalence, join/leave, chunked prefill, params, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.errors import QueueFullError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig, admission_order
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.types import SamplingParams, TextPrompt

T = TypeVar("T")
GREEDY = SamplingParams(temperature=0, max_tokens=24)


def run_engine(models_dir: Path, body: Callable[[Engine], Awaitable[T]], **sched: Any) -> T:
    config = EngineConfig(
        model_dirs=[models_dir],
        hf_cache=None,
        pool=PoolConfig(max_models=2, memory_budget_bytes=1 << 32, scheduler=SchedulerConfig(**sched)),
    )
    return run_config(config, body)


def run_config(config: EngineConfig, body: Callable[[Engine], Awaitable[T]]) -> T:
    """Start an engine with `config`, run `body` on it, stop it."""

    async def main() -> T:
        engine = Engine(config)
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


async def collect(gen: Generation) -> tuple[list[int], str, str | None]:
    ids: list[int] = []
    text = ""
    finish = None
    async for chunk in gen:
        ids += chunk.token_ids
        text += chunk.text
        finish = chunk.finish_reason or finish
    return ids, text, finish


def prompt(i: int) -> TextPrompt:
    return TextPrompt(text=f"Request number {i}: tell me something about the number {i * 7}.")


def test_greedy_tokens_are_the_same_alone_in_a_batch_of_16_and_after_a_cache_hit(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        alone, _, _ = await collect(await engine.generate("tiny-llama", prompt(3), GREEDY))
        gens = [await engine.generate("tiny-llama", prompt(i), GREEDY) for i in range(16)]
        batched = await asyncio.gather(*(collect(g) for g in gens))
        assert batched[3][0] == alone
        cached_gen = await engine.generate("tiny-llama", prompt(3), GREEDY)
        cached, _, _ = await collect(cached_gen)
        assert cached_gen.usage.cached_tokens > 0
        assert cached == alone

    run_engine(tiny_models_dir, body, max_num_seqs=16, prefix_block_size=4)


def test_requests_join_a_running_batch_and_leave_when_done(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        long = await engine.generate("tiny-qwen3", prompt(1), replace(GREEDY, max_tokens=1500))
        stream = long.__aiter__()  # keep a reference: a dropped iterator cancels its generation
        first = await stream.__anext__()
        assert first.text or first.token_ids
        shorts = [await engine.generate("tiny-qwen3", prompt(i), replace(GREEDY, max_tokens=5)) for i in range(2, 6)]
        results = await asyncio.gather(*(collect(g) for g in shorts))
        assert all(len(ids) == 5 and finish == "length" for ids, _, finish in results)
        assert not long.done  # the short ones joined and left while the long one kept going
        async for _ in stream:
            pass
        stats = engine.pool.entries()[0].scheduler.stats  # type: ignore[union-attr]
        assert stats.steps < 1500 + 4 * 5  # decode steps were shared

    run_engine(tiny_models_dir, body)


def test_long_prompt_is_prefilled_in_chunks_between_decode_steps(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        decoding = await engine.generate("tiny-llama", prompt(1), replace(GREEDY, max_tokens=400))
        arrivals: list[float] = []

        async def watch() -> None:
            async for _chunk in decoding:
                arrivals.append(time.monotonic())

        watcher = asyncio.create_task(watch())
        while len(arrivals) < 3:
            await asyncio.sleep(0.005)
        submitted = time.monotonic()
        long_prompt = TextPrompt(token_ids=tuple(range(300, 900)) * 3)
        big = await engine.generate("tiny-llama", long_prompt, replace(GREEDY, max_tokens=1))
        async for _ in big:
            break
        first_token_of_big = time.monotonic()
        during = [t for t in arrivals if submitted < t < first_token_of_big]
        # 1800 prompt tokens in chunks of 64: decode steps keep running between the chunks.
        assert len(during) >= 10
        decoding.cancel()
        await watcher

    run_engine(tiny_models_dir, body, prefill_step_size=64)


def test_each_sequence_keeps_its_own_sampling_parameters_in_one_batch(tiny_models_dir: Path) -> None:
    params = {
        "greedy": GREEDY,
        "seeded": SamplingParams(temperature=1.3, seed=42, max_tokens=20),
        "short": replace(GREEDY, max_tokens=3),
        "penalised": replace(GREEDY, frequency_penalty=2.0, presence_penalty=1.0),
        "biased": replace(GREEDY, max_tokens=5, logit_bias={298: 100.0}),
    }

    async def body(engine: Engine) -> None:
        alone = {k: await collect(await engine.generate("tiny-llama", prompt(5), p)) for k, p in params.items()}
        gens = {k: await engine.generate("tiny-llama", prompt(5), p) for k, p in params.items()}
        together = dict(zip(gens, await asyncio.gather(*(collect(g) for g in gens.values())), strict=True))
        assert together == alone
        assert alone["biased"][0] == [298] * 5
        assert len(alone["short"][0]) == 3
        stop = alone["greedy"][1][6:9]
        _ids, text, finish = await collect(
            await engine.generate("tiny-llama", prompt(5), replace(GREEDY, stop=(stop,)))
        )
        assert finish == "stop" and text == alone["greedy"][1][: alone["greedy"][1].index(stop)]

    run_engine(tiny_models_dir, body, max_num_seqs=8)


def test_waiting_queue_is_bounded(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        running = await engine.generate("tiny-llama", prompt(0), replace(GREEDY, max_tokens=1500))
        stream = running.__aiter__()
        await stream.__anext__()  # admitted: it no longer counts as waiting
        waiting = [await engine.generate("tiny-llama", prompt(i), replace(GREEDY, max_tokens=2)) for i in (1, 2)]
        with pytest.raises(QueueFullError) as info:
            await engine.generate("tiny-llama", prompt(3), GREEDY)
        assert info.value.retry_after >= 1
        running.cancel()
        async for _ in stream:
            pass
        for g in waiting:
            await collect(g)
        # Room again once the queue drained.
        await collect(await engine.generate("tiny-llama", prompt(4), replace(GREEDY, max_tokens=2)))

    run_engine(tiny_models_dir, body, max_num_seqs=1, max_waiting=2)


def test_interactive_requests_go_first_but_old_batch_jobs_are_not_starved() -> None:
    gen: Any = object()
    now = 1000.0
    batch_job = Sequence(gen, 0, [1], GREEDY, 1, priority=5, arrival=now - 1)
    interactive = Sequence(gen, 0, [1], GREEDY, 1, priority=0, arrival=now)
    assert admission_order([batch_job, interactive], now, aging_seconds=2.0) == [interactive, batch_job]
    old_batch_job = replace(batch_job, arrival=now - 20)
    assert admission_order([interactive, old_batch_job], now, aging_seconds=2.0) == [old_batch_job, interactive]


def test_cancelling_one_request_leaves_the_others_running(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        victim = await engine.generate("tiny-gemma3", prompt(1), replace(GREEDY, max_tokens=1000))
        other = await engine.generate("tiny-gemma3", prompt(2), replace(GREEDY, max_tokens=40))
        stream = victim.__aiter__()
        await stream.__anext__()
        victim.cancel()
        ids, _, finish = await collect(other)
        assert len(ids) == 40 and finish == "length"
        async for _ in stream:
            pass
        stats = engine.pool.entries()[0].scheduler.stats  # type: ignore[union-attr]
        assert stats.requests_cancelled == 1
        assert stats.tokens_generated < 1000 + 40

    run_engine(tiny_models_dir, body)


def test_memory_returns_to_its_level_after_many_requests(tiny_models_dir: Path) -> None:
    import mlx.core as mx

    async def wave(engine: Engine, start: int, count: int) -> None:
        for base in range(start, start + count, 16):
            gens = [
                await engine.generate("tiny-llama", prompt(i), replace(GREEDY, max_tokens=8))
                for i in range(base, min(base + 16, start + count))
            ]
            await asyncio.gather(*(collect(g) for g in gens))

    async def body(engine: Engine) -> tuple[int, int]:
        await wave(engine, 0, 10)
        cache = engine.pool.entries()[0].scheduler.cache  # type: ignore[union-attr]
        mx.clear_cache()
        after_10 = mx.get_active_memory() - cache.bytes
        await wave(engine, 10, 490)
        mx.clear_cache()
        after_500 = mx.get_active_memory() - cache.bytes
        return after_10, after_500

    after_10, after_500 = run_engine(tiny_models_dir, body, max_num_seqs=16)
    # Margin: 5% plus 1 MB for allocator granularity on a ~2 MB model.
    assert after_500 <= after_10 * 1.05 + (1 << 20), (after_10, after_500)
