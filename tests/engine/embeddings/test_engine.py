"""Embeddings through the engine: the pool loads them on demand, work runs on the model's thread, errors are 400s."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from mlx_manager.engine.embeddings.model import EmbeddingModel
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.types import SamplingParams, TextPrompt

T = TypeVar("T")
GB = 1 << 30


def run(dirs: list[Path], body: Callable[[Engine], Awaitable[T]], max_models: int = 4) -> T:
    async def main() -> T:
        engine = Engine(EngineConfig(model_dirs=dirs, hf_cache=None, pool=PoolConfig(max_models, 4 * GB)))
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_embedding_runs_on_the_models_own_thread(minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    original = EmbeddingModel.embed

    def spy(self: EmbeddingModel, inputs: list[object]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return original(self, inputs)  # type: ignore[arg-type]

    monkeypatch.setattr(EmbeddingModel, "embed", spy)

    async def body(engine: Engine) -> tuple[int, int]:
        out = await engine.embed("all-MiniLM-L6-v2", ["one", "two words", "and three words"], dimensions=32)
        return out.vectors.shape[1], out.prompt_tokens

    dims, tokens = run([minilm_dir.parent], body)
    assert dims == 32 and tokens == 3 + 4 + 5
    assert len(threads) == 1 and next(iter(threads)).startswith("mlx-")


def test_wrong_task_is_refused_before_loading(
    minilm_dir: Path, tiny_rerankers_dir: Path, tiny_models_dir: Path
) -> None:
    async def body(engine: Engine) -> list[str]:
        errors: list[str] = []
        calls: list[Awaitable[object]] = [
            engine.embed("tiny-llama", ["hi"]),
            engine.embed("tiny-cross-encoder", ["hi"]),
            engine.rerank("tiny-llama", "q", ["d"]),
            engine.generate("all-MiniLM-L6-v2", TextPrompt("hi"), SamplingParams(max_tokens=2)),
        ]
        for call in calls:
            with pytest.raises(InvalidRequestError) as info:
                await call
            assert info.value.param == "model"
            errors.append(info.value.message)
        assert engine.pool.loads == 0
        return errors

    errors = run([tiny_models_dir, minilm_dir.parent, tiny_rerankers_dir], body)
    assert "text-generation model; it cannot produce embeddings" in errors[0]
    assert "reranker (cross-encoder)" in errors[1]
    assert "text-generation model" in errors[2]
    assert "embedding model; it cannot generate text" in errors[3]


def test_bad_inputs_name_the_field_at_fault(minilm_dir: Path) -> None:
    async def body(engine: Engine) -> list[tuple[str | None, str]]:
        out = []
        for kwargs in (
            {"inputs": ["x"], "dimensions": 385},
            {"inputs": []},
            {"inputs": ["ok", ""]},
            {"inputs": [[101, 999999]]},
        ):
            with pytest.raises(InvalidRequestError) as info:
                await engine.embed("all-MiniLM-L6-v2", **kwargs)  # type: ignore[arg-type]
            out.append((info.value.param, info.value.message))
        return out

    (dims, empty, blank, oob) = run([minilm_dir.parent], body)
    assert dims == ("dimensions", "dimensions must be between 1 and 384 for 'all-MiniLM-L6-v2', got 385.")
    assert empty[0] == blank[0] == oob[0] == "input"
    assert "out of range: [999999]" in oob[1]


def test_embedding_models_share_the_pool_and_are_evicted_lru(
    minilm_dir: Path, tiny_rerankers_dir: Path, tiny_models_dir: Path
) -> None:
    async def body(engine: Engine) -> tuple[list[str], list[str]]:
        await engine.embed("all-MiniLM-L6-v2", ["first"])
        memory = engine.pool.get("all-MiniLM-L6-v2")
        assert memory is not None and memory.memory_bytes > 80e6 and memory.scheduler is None
        await engine.rerank("tiny-cross-encoder", "q", ["doc"])
        both = sorted(e.info.id for e in engine.pool.entries())
        gen = await engine.generate("tiny-llama", TextPrompt("hi"), SamplingParams(max_tokens=2))
        async for _ in gen:
            pass
        return both, sorted(e.info.id for e in engine.pool.entries())

    both, after = run([tiny_models_dir, minilm_dir.parent, tiny_rerankers_dir], body, max_models=2)
    assert both == ["all-MiniLM-L6-v2", "tiny-cross-encoder"]
    assert after == ["tiny-cross-encoder", "tiny-llama"]  # MiniLM was least recently used


def test_rerank_with_a_bi_encoder_is_cosine_similarity(minilm_dir: Path) -> None:
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "The French capital is Paris."]

    async def body(engine: Engine) -> tuple[list[float], np.ndarray, int]:
        ranking = await engine.rerank("all-MiniLM-L6-v2", "What is the capital of France?", docs)
        vectors = await engine.embed("all-MiniLM-L6-v2", ["What is the capital of France?", *docs])
        return ranking.scores, vectors.vectors, ranking.total_tokens

    scores, vectors, tokens = run([minilm_dir.parent], body)
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-5)
    assert scores[1] < min(scores[0], scores[2]) and tokens > 0
