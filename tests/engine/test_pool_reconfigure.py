"""The pool takes new limits while running: lower limits evict idle models now, higher ones wake waiting loads,
and the idle reaper reads the TTL in force."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.loader import load_model, release_memory
from mlx_manager.engine.pool import ModelPool, PoolConfig
from mlx_manager.engine.types import ModelInfo

GB = 1 << 30


@pytest.fixture(scope="module")
def infos(tiny_models_dir: Path) -> dict[str, ModelInfo]:
    return discover_models([tiny_models_dir], None)


def test_lower_limits_evict_idle_models_least_recent_first_but_keep_pinned_and_busy(
    infos: dict[str, ModelInfo],
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        pool = ModelPool(PoolConfig(4, GB), load_model, release_memory)
        pool.release(await pool.acquire(infos["tiny-llama"], pin=True))
        pool.release(await pool.acquire(infos["tiny-qwen3"]))
        pool.release(await pool.acquire(infos["tiny-gemma3"]))
        busy = await pool.acquire(infos["tiny-mistral"])
        evicted = await pool.reconfigure(replace(pool.config, max_models=2))
        remaining = sorted(e.info.id for e in pool.entries())
        pool.release(busy)
        await pool.close()
        return evicted, remaining

    evicted, remaining = asyncio.run(main())
    assert evicted == ["tiny-qwen3", "tiny-gemma3"]
    assert remaining == ["tiny-llama", "tiny-mistral"]


def test_raising_max_models_lets_a_waiting_load_in_without_evicting(infos: dict[str, ModelInfo]) -> None:
    async def main() -> list[str]:
        pool = ModelPool(PoolConfig(1, GB, room_wait_seconds=30), load_model, release_memory)
        busy = await pool.acquire(infos["tiny-llama"])
        waiting = asyncio.create_task(pool.acquire(infos["tiny-qwen3"]))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await pool.reconfigure(replace(pool.config, max_models=2))
        second = await asyncio.wait_for(waiting, 10)
        ids = sorted(e.info.id for e in pool.entries())
        pool.release(busy)
        pool.release(second)
        await pool.close()
        return ids

    assert asyncio.run(main()) == ["tiny-llama", "tiny-qwen3"]


def test_the_reaper_applies_a_ttl_switched_on_while_running(infos: dict[str, ModelInfo]) -> None:
    async def main() -> list[str]:
        pool = ModelPool(PoolConfig(4, GB), load_model, release_memory)
        reaper = asyncio.create_task(pool.run_idle_reaper())
        pool.release(await pool.acquire(infos["tiny-llama"]))
        await asyncio.sleep(1.2)
        assert [e.info.id for e in pool.entries()] == ["tiny-llama"]  # no TTL yet
        await pool.reconfigure(replace(pool.config, idle_ttl_seconds=0.2))
        for _ in range(40):
            if not pool.entries():
                break
            await asyncio.sleep(0.1)
        reaper.cancel()
        ids = [e.info.id for e in pool.entries()]
        await pool.close()
        return ids

    assert asyncio.run(main()) == []
