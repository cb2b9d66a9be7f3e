"""The two tiers together, through the engine with a real tiny model: what RAM evicts, what stays idle and what
an unload leaves is read back from disk (a loading model prefetches its recent files); a request that opts out
writes to neither tier."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mlx_manager.engine.engine import Engine
from mlx_manager.engine.scheduler import Scheduler
from mlx_manager.engine.types import SamplingParams, TextPrompt
from tests.engine.test_scheduler import collect, run_engine

GREEDY = SamplingParams(temperature=0, max_tokens=8)


def ask(first: int) -> TextPrompt:
    return TextPrompt(token_ids=tuple(range(first, first + 200)))


def scheduler(engine: Engine) -> Scheduler:
    sched = engine.pool.entries()[0].scheduler
    assert sched is not None
    return sched


def settings(tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {"disk_cache_dir": tmp_path / "kv", "disk_cache_bytes": 1 << 30, "prefix_block_size": 16, **more}


async def answer(engine: Engine, prompt: TextPrompt, params: SamplingParams = GREEDY) -> tuple[list[int], int, Any]:
    gen = await engine.generate("tiny-llama", prompt, params)
    ids, _, _ = await collect(gen)
    return ids, gen.usage.cached_tokens, scheduler(engine).cache.stats.recent[-1]["tier"]


def test_what_ram_evicts_is_read_back_from_disk(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        cold, _, _ = await answer(engine, ask(300))
        for first in (520, 740):  # each pushes the one before out of a RAM tier that holds one prompt
            await answer(engine, ask(first))
        assert scheduler(engine).cache.stats.evictions >= 2
        disk = scheduler(engine).tiers.disk
        assert disk is not None and disk.flush()  # evicted entries are written on the writer thread
        again, cached, tier = await answer(engine, ask(300))
        assert (again, cached, tier) == (cold, 199, "disk")

    # One 200-token prompt of tiny-llama holds 2 layers x 2 x 200 x 2 heads x 32 x 4 bytes = 204,800 bytes.
    run_engine(tiny_models_dir, body, **settings(tmp_path, prefix_cache_bytes=300_000))


def test_an_idle_entry_is_written_before_any_unload(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        await answer(engine, ask(300))
        disk = scheduler(engine).tiers.disk
        assert disk is not None
        deadline = time.monotonic() + 10
        while not len(disk) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(disk) == 1 and disk.stats.writes == 1  # a crash now would not lose it

    run_engine(tiny_models_dir, body, **settings(tmp_path, disk_write_delay=0.1))


def test_a_prefix_survives_an_unload_and_reload(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        cold, _, _ = await answer(engine, ask(300))
        assert await engine.pool.unload("tiny-llama")
        again, cached, tier = await answer(engine, ask(300))
        assert (again, cached, tier) == (cold, 199, "disk")

    run_engine(tiny_models_dir, body, **settings(tmp_path))


def test_cache_false_writes_to_neither_tier(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        await answer(engine, ask(300), replace(GREEDY, cache=False))
        assert await engine.pool.unload("tiny-llama")
        _, cached, _ = await answer(engine, ask(300), replace(GREEDY, cache=False))
        disk = scheduler(engine).tiers.disk
        assert cached == 0 and disk is not None and len(disk) == 0 and len(scheduler(engine).cache) == 0

    run_engine(tiny_models_dir, body, **settings(tmp_path))


@pytest.mark.parametrize("block", [16, 19])  # 19: a stored entry (208 tokens) plus one fills whole blocks
def test_a_loading_model_prefetches_its_recent_files_before_any_request(
    tiny_models_dir: Path, tmp_path: Path, block: int
) -> None:
    async def body(engine: Engine) -> None:
        cold = [(await answer(engine, ask(first)))[0] for first in (300, 520)]
        assert await engine.pool.unload("tiny-llama")
        await engine.load("tiny-llama")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the model thread opens its tiers as it starts
            disk = scheduler(engine).tiers.disk
            if disk is not None and disk.stats.prefetched == 2:
                break
            time.sleep(0.05)
        assert disk is not None and disk.stats.prefetched == 2  # read on the prefetch thread, no request asked
        again = [await answer(engine, ask(first)) for first in (300, 520)]
        assert again == [(ids, 199, "disk") for ids in cold]
        assert disk.stats.reads == 2  # the requests read nothing again

    run_engine(tiny_models_dir, body, **settings(tmp_path, prefix_block_size=block))


def test_a_prefetch_reads_at_most_half_the_ram_tier(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        cold = [(await answer(engine, ask(first)))[0] for first in (300, 520)]
        assert await engine.pool.unload("tiny-llama")
        again = [await answer(engine, ask(first)) for first in (300, 520)]
        disk = scheduler(engine).tiers.disk
        assert disk is not None and disk.stats.prefetched == 1  # one 204,800-byte prompt fits 250,000
        assert again == [(ids, 199, "disk") for ids in cold]
        assert disk.stats.reads == 2  # the other one read when asked

    run_engine(tiny_models_dir, body, **settings(tmp_path, prefix_cache_bytes=500_000))
