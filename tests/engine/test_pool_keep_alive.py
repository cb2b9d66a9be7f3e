"""A client's keep_alive on the pool (Ollama's): its own idle time instead of the TTL, 0 unloads once idle (after
the last user), negative pins until a later keep_alive, and an admin's pin outlives every keep_alive."""

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


def _pool(max_models: int = 4, ttl: float = 0) -> ModelPool:
    return ModelPool(PoolConfig(max_models, GB, ttl), load_model, release_memory)


def _ids(pool: ModelPool) -> list[str]:
    return sorted(e.info.id for e in pool.entries())


def test_a_keep_alive_replaces_the_ttl_for_that_model_only(infos: dict[str, ModelInfo]) -> None:
    async def main() -> None:
        pool = _pool(ttl=60)
        for name in ("tiny-llama", "tiny-qwen3"):
            pool.release(await pool.acquire(infos[name]))
        await pool.keep_alive("tiny-llama", 0.2)
        left = pool.expires_in(pool.get("tiny-llama"))  # type: ignore[arg-type]
        assert left is not None and 0 < left <= 0.2
        assert 59 < (pool.expires_in(pool.get("tiny-qwen3")) or 0) <= 60  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        assert await pool.unload_idle() == ["tiny-llama"] and _ids(pool) == ["tiny-qwen3"]
        await pool.close()

    asyncio.run(main())


def test_keep_alive_zero_waits_for_the_last_user(infos: dict[str, ModelInfo]) -> None:
    async def main() -> None:
        pool = _pool()
        first, second = await pool.acquire(infos["tiny-llama"]), await pool.acquire(infos["tiny-llama"])
        pool.release(first)
        await pool.keep_alive("tiny-llama", 0)
        assert _ids(pool) == ["tiny-llama"]  # still generating for the second request
        pool.release(second)
        await asyncio.sleep(0.05)  # the release hands the unload to the loop
        assert _ids(pool) == []
        await pool.close()

    asyncio.run(main())


def test_negative_keep_alive_pins_until_a_later_one_and_an_admin_pin_stays(infos: dict[str, ModelInfo]) -> None:
    async def main() -> None:
        pool = _pool(max_models=1)
        pool.release(await pool.acquire(infos["tiny-llama"]))
        await pool.keep_alive("tiny-llama", -1)
        assert pool.expires_in(pool.get("tiny-llama")) is None  # type: ignore[arg-type]
        with pytest.raises(MemoryBudgetError, match="pinned"):
            await pool.acquire(infos["tiny-qwen3"])
        await pool.keep_alive("tiny-llama", 300)  # the pin was keep_alive's own: it goes
        pool.release(await pool.acquire(infos["tiny-qwen3"]))
        assert _ids(pool) == ["tiny-qwen3"]
        pool.release(await pool.acquire(infos["tiny-qwen3"], pin=True))  # an admin's pin
        await pool.keep_alive("tiny-qwen3", -1)
        await pool.keep_alive("tiny-qwen3", 0)
        assert _ids(pool) == ["tiny-qwen3"] and pool.get("tiny-qwen3").pinned  # type: ignore[union-attr]
        await pool.close()

    asyncio.run(main())
