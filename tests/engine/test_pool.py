"""The pool with real mlx-lm loads: single flight, LRU, pins, budget and idle TTL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.errors import MemoryBudgetError
from mlx_manager.engine.loader import load_model, release_memory
from mlx_manager.engine.pool import ModelPool, PoolConfig
from mlx_manager.engine.types import ModelInfo

GB = 1 << 30


@pytest.fixture(scope="module")
def infos(tiny_models_dir: Path) -> dict[str, ModelInfo]:
    return discover_models([tiny_models_dir], None)


def _pool(max_models: int = 4, budget: int = GB, ttl: float = 0) -> ModelPool:
    return ModelPool(PoolConfig(max_models, budget, ttl), load_model, release_memory)


def test_concurrent_acquires_share_one_load(infos: dict[str, ModelInfo]) -> None:
    async def main() -> int:
        pool = _pool()
        entries = await asyncio.gather(*(pool.acquire(infos["tiny-llama"]) for _ in range(10)))
        assert len({id(e) for e in entries}) == 1 and entries[0].active == 10
        for e in entries:
            pool.release(e)
        await pool.close()
        return pool.loads

    assert asyncio.run(main()) == 1


def test_lru_eviction_keeps_pinned_models(infos: dict[str, ModelInfo]) -> None:
    async def main() -> list[str]:
        pool = _pool(max_models=2)
        for name, pin in (("tiny-llama", True), ("tiny-qwen3", False), ("tiny-gemma3", False)):
            pool.release(await pool.acquire(infos[name], pin=pin))
        ids = sorted(e.info.id for e in pool.entries())
        await pool.close()
        return ids

    assert asyncio.run(main()) == ["tiny-gemma3", "tiny-llama"]


def test_model_larger_than_budget_is_refused_before_loading(infos: dict[str, ModelInfo]) -> None:
    async def main() -> None:
        pool = _pool(budget=1000)
        with pytest.raises(MemoryBudgetError, match="memory budget"):
            await pool.acquire(infos["tiny-llama"])
        assert pool.loads == 0

    asyncio.run(main())


def test_budget_evicts_to_fit(infos: dict[str, ModelInfo]) -> None:
    size = infos["tiny-llama"].size_bytes

    async def main() -> list[str]:
        pool = _pool(budget=int(size * 1.5))
        pool.release(await pool.acquire(infos["tiny-llama"]))
        pool.release(await pool.acquire(infos["tiny-qwen3"]))
        ids = [e.info.id for e in pool.entries()]
        await pool.close()
        return ids

    assert asyncio.run(main()) == ["tiny-qwen3"]


def test_all_pinned_means_no_room(infos: dict[str, ModelInfo]) -> None:
    async def main() -> None:
        pool = _pool(max_models=1)
        pool.release(await pool.acquire(infos["tiny-llama"], pin=True))
        with pytest.raises(MemoryBudgetError, match="pinned"):
            await pool.acquire(infos["tiny-qwen3"])
        await pool.close()

    asyncio.run(main())


def test_idle_models_unload_after_ttl_but_busy_ones_stay(infos: dict[str, ModelInfo]) -> None:
    async def main() -> tuple[list[str], list[str]]:
        pool = _pool(ttl=0.2)
        pool.release(await pool.acquire(infos["tiny-llama"]))
        busy = await pool.acquire(infos["tiny-qwen3"])
        await asyncio.sleep(0.3)
        unloaded = await pool.unload_idle()
        remaining = [e.info.id for e in pool.entries()]
        pool.release(busy)
        await pool.close()
        return unloaded, remaining

    assert asyncio.run(main()) == (["tiny-llama"], ["tiny-qwen3"])


def test_failed_load_is_reported_and_can_be_retried(infos: dict[str, ModelInfo], tmp_path: Path) -> None:
    from dataclasses import replace

    broken = replace(infos["tiny-llama"], id="broken", path=str(tmp_path))

    async def main() -> None:
        pool = _pool()
        for _ in range(2):
            with pytest.raises(Exception, match="Could not load model 'broken'"):
                await pool.acquire(broken)
        assert pool.entries() == []

    asyncio.run(main())


def test_a_busy_model_is_never_evicted_the_next_load_waits_for_it(infos: dict[str, ModelInfo]) -> None:
    async def main() -> tuple[int, list[str]]:
        pool = _pool(max_models=1)
        busy = await pool.acquire(infos["tiny-llama"])
        waiter = asyncio.create_task(pool.acquire(infos["tiny-qwen3"]))
        await asyncio.sleep(0.3)
        assert not waiter.done()  # tiny-llama is still serving: no second model, no eviction
        assert [e.info.id for e in pool.entries()] == ["tiny-llama"]
        pool.release(busy)
        entry = await asyncio.wait_for(waiter, 10)
        pool.release(entry)
        ids = [e.info.id for e in pool.entries()]
        await pool.close()
        return pool.loads, ids

    assert asyncio.run(main()) == (2, ["tiny-qwen3"])


def test_waiting_for_room_gives_up_with_a_clear_error(infos: dict[str, ModelInfo]) -> None:
    async def main() -> None:
        pool = ModelPool(PoolConfig(1, GB, room_wait_seconds=0.3), load_model, release_memory)
        busy = await pool.acquire(infos["tiny-llama"])
        with pytest.raises(MemoryBudgetError, match="stayed busy"):
            await pool.acquire(infos["tiny-qwen3"])
        pool.release(busy)
        await pool.close()

    asyncio.run(main())


def test_memory_gate_evicts_idle_models_then_refuses_with_the_numbers(infos: dict[str, ModelInfo]) -> None:
    free = {"bytes": 0}

    def pool(reserve: int) -> ModelPool:
        config = PoolConfig(4, GB, reserve_bytes=reserve, free_memory=lambda: free["bytes"])
        return ModelPool(config, load_model, release_memory)

    async def main() -> None:
        llama = infos["tiny-llama"]
        need = int(llama.size_bytes * 1.1) + llama.kv_bytes_per_token * (llama.context_length or 4096)
        assert llama.kv_bytes_per_token > 0
        p = pool(reserve=0)
        free["bytes"] = 10 * GB
        p.release(await p.acquire(infos["tiny-qwen3"]))
        free["bytes"] = need - 1  # the idle qwen3 must go for llama to fit
        p.release(await p.acquire(llama))
        assert [e.info.id for e in p.entries()] == ["tiny-llama"]
        busy = await p.acquire(llama)  # now nothing idle is left to unload
        with pytest.raises(MemoryBudgetError, match=r"needs about .* GB .* only .* GB is free") as err:
            await p.acquire(infos["tiny-gemma3"])
        assert "memory_reserve_bytes" in str(err.value)
        p.release(busy)
        await p.close()

    asyncio.run(main())
