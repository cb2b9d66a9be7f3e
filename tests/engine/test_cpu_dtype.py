"""On MLX's CPU backend quantized and half-precision checkpoints run in float32 when they fit (cpu_dtype)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import mlx.core as mx
import pytest

from mlx_manager.engine.cpu_dtype import CpuDtype, float32_plan, on_cpu
from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.errors import MemoryBudgetError
from mlx_manager.engine.loader import LoadedModel, load_model, release_memory
from mlx_manager.engine.pool import ModelPool, PoolConfig
from mlx_manager.engine.types import ModelInfo, SamplingParams, TextPrompt
from tests.engine.test_scheduler import collect

pytestmark = pytest.mark.skipif(not on_cpu(), reason="weights are converted only on MLX's CPU backend")

GB = 1 << 30
QUANTIZED = "tiny-llama-4bit"
PROMPTS = [TextPrompt(text=f"Request {i}: say something about the number {i * 7}.") for i in range(4)]
GREEDY = SamplingParams(temperature=0, max_tokens=24)


@pytest.fixture(scope="module")
def infos(tiny_models_dir: Path) -> dict[str, ModelInfo]:
    return discover_models([tiny_models_dir], None)


def _load(info: ModelInfo, config: PoolConfig) -> LoadedModel:
    """Load through a pool with `config`, as the server does, and return what it loaded."""

    async def main() -> LoadedModel:
        pool = ModelPool(config, load_model, release_memory)
        entry = await pool.acquire(info)
        pool.release(entry)
        loaded = entry.loaded
        await pool.close()
        assert isinstance(loaded, LoadedModel)
        return loaded

    return asyncio.run(main())


def _greedy_tokens(models_dir: Path, cpu_dtype: CpuDtype) -> tuple[list[list[int]], LoadedModel]:
    config = EngineConfig(model_dirs=[models_dir], hf_cache=None, pool=PoolConfig(2, 4 * GB, cpu_dtype=cpu_dtype))

    async def main() -> tuple[list[list[int]], LoadedModel]:
        engine = Engine(config)
        await engine.start()
        try:
            outs = [await collect(await engine.generate(QUANTIZED, p, GREEDY)) for p in PROMPTS]
            entry = engine.pool.get(QUANTIZED)
            assert entry is not None and isinstance(entry.loaded, LoadedModel)
            return [ids for ids, _, _ in outs], entry.loaded
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_auto_runs_a_4bit_model_in_float32_and_greedy_tokens_match_the_quantized_model(
    tiny_models_dir: Path, infos: dict[str, ModelInfo]
) -> None:
    quantized, kept = _greedy_tokens(tiny_models_dir, "keep")
    expanded, converted = _greedy_tokens(tiny_models_dir, "auto")
    assert (kept.quantization_bits, kept.converted_from) == (4, None)
    assert (converted.dtype, converted.quantization_bits, converted.converted_from) == ("float32", None, "4-bit")
    # Dequantizing is exact: the same values, multiplied by BLAS instead of the quantized kernel.
    assert expanded == quantized
    assert all(len(ids) == GREEDY.max_tokens for ids in expanded)
    # What was measured is what the plan expected: float32 weights, the quantized arrays released.
    plan = float32_plan(infos[QUANTIZED])
    assert plan is not None
    assert converted.memory_bytes == pytest.approx(plan.weight_bytes, rel=0.02)
    assert converted.memory_bytes > 5 * kept.memory_bytes


def test_keep_leaves_a_4bit_model_quantized_even_with_room_to_spare(infos: dict[str, ModelInfo]) -> None:
    loaded = _load(infos[QUANTIZED], PoolConfig(1, 4 * GB, cpu_dtype="keep"))
    assert (loaded.quantization_bits, loaded.converted_from) == (4, None)
    assert loaded.memory_bytes < infos[QUANTIZED].size_bytes * 1.1


def test_auto_keeps_the_model_quantized_when_float32_would_not_fit_the_budget(
    infos: dict[str, ModelInfo], caplog: pytest.LogCaptureFixture
) -> None:
    info = infos[QUANTIZED]
    plan = float32_plan(info)
    assert plan is not None
    budget = (info.size_bytes + plan.weight_bytes) // 2  # room for the 4-bit weights, not for float32
    with caplog.at_level(logging.INFO, logger="mlx_manager.engine.cpu_dtype"):
        loaded = _load(info, PoolConfig(1, budget, cpu_dtype="auto"))
    assert (loaded.quantization_bits, loaded.converted_from) == (4, None)
    assert f"Keeping {QUANTIZED} 4-bit on CPU" in caplog.text


def test_auto_keeps_the_model_quantized_when_float32_would_not_fit_free_memory(infos: dict[str, ModelInfo]) -> None:
    info = infos[QUANTIZED]
    plan = float32_plan(info)
    assert plan is not None
    kv = info.kv_bytes_per_token * (info.context_length or 4096)
    # The memory gate passes the 4-bit weights (+10% and one KV cache) but not the float32 ones.
    free = int(info.size_bytes * 1.1) + kv + (plan.weight_bytes - info.size_bytes) // 2
    loaded = _load(info, PoolConfig(1, 4 * GB, reserve_bytes=0, free_memory=lambda: free, cpu_dtype="auto"))
    assert (loaded.quantization_bits, loaded.converted_from) == (4, None)


def test_float32_always_converts_and_never_falls_back_to_the_quantized_weights(infos: dict[str, ModelInfo]) -> None:
    info = infos[QUANTIZED]
    plan = float32_plan(info)
    assert plan is not None
    loaded = _load(info, PoolConfig(1, 4 * GB, cpu_dtype="float32"))
    assert (loaded.dtype, loaded.quantization_bits, loaded.converted_from) == ("float32", None, "4-bit")
    budget = (info.size_bytes + plan.weight_bytes) // 2  # auto would keep 4-bit here
    with pytest.raises(MemoryBudgetError, match="memory budget"):
        _load(info, PoolConfig(1, budget, cpu_dtype="float32"))


def test_bfloat16_weights_run_in_float32_and_float32_weights_load_as_stored(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "tiny-llama-bf16"
    shutil.copytree(tiny_models["tiny-llama"], folder)
    for weights in folder.glob("*.safetensors"):
        arrays = mx.load(str(weights))
        assert isinstance(arrays, dict)
        mx.save_safetensors(str(weights), {k: v.astype(mx.bfloat16) for k, v in arrays.items()})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    infos = discover_models([tmp_path, tiny_models["tiny-llama"].parent], None)

    kept = _load(infos["tiny-llama-bf16"], PoolConfig(1, 4 * GB, cpu_dtype="keep"))
    converted = _load(infos["tiny-llama-bf16"], PoolConfig(1, 4 * GB, cpu_dtype="auto"))
    plain = _load(infos["tiny-llama"], PoolConfig(1, 4 * GB, cpu_dtype="float32"))
    assert (kept.dtype, kept.converted_from) == ("bfloat16", None)
    assert (converted.dtype, converted.converted_from) == ("float32", "bfloat16")
    assert converted.memory_bytes == pytest.approx(2 * kept.memory_bytes, rel=0.02)
    assert float32_plan(infos["tiny-llama"]) is None
    assert (plain.dtype, plain.converted_from) == ("float32", None)
