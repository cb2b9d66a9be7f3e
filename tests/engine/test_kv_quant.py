"""KV-cache quantization (kv_bits) with real tiny models: the batched quantized cache, greedy agreement with float
KV, prefix-cache hits in RAM and on disk, float and quantized caches kept apart, and the memory gate's size."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import mlx.core as mx
import pytest
from mlx_lm.models.cache import BatchKVCache, KVCache

from mlx_manager.engine.backend import Run
from mlx_manager.engine.cache_support import cache_support
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.errors import KVSettingConflict, MemoryBudgetError
from mlx_manager.engine.kv_quant import kv_setting
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.quantized_kv import BatchQuantizedKV, QuantizedKV
from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig
from mlx_manager.engine.types import FLOAT_KV, KVSetting, SamplingParams, TextPrompt
from tests.engine.test_scheduler import collect, run_config

T = TypeVar("T")
GREEDY = SamplingParams(temperature=0, max_tokens=24)
EIGHT = KVSetting(8, 32)  # tiny models have heads of 32: a group of 64 would not fit


def run(
    models_dir: Path, body: Callable[[Engine], Awaitable[T]], kv: KVSetting, free: int = 1 << 40, **sched: Any
) -> T:
    config = EngineConfig(
        model_dirs=[models_dir],
        hf_cache=None,
        pool=PoolConfig(
            max_models=2,
            memory_budget_bytes=1 << 32,
            scheduler=SchedulerConfig(**sched),
            kv=kv,
            reserve_bytes=0,
            free_memory=lambda: free,
        ),
    )
    return run_config(config, body)


def scheduler(engine: Engine, model: str = "tiny-llama") -> Scheduler:
    entry = engine.pool.get(model)
    assert entry is not None and entry.scheduler is not None
    return entry.scheduler


def prompt(i: int) -> TextPrompt:
    return TextPrompt(text=f"Request number {i}: tell me something about the number {i * 7}." * (1 + i % 3))


async def answers(engine: Engine, prompts: list[TextPrompt], model: str = "tiny-llama") -> list[list[int]]:
    gens = [await engine.generate(model, p, GREEDY) for p in prompts]
    return [ids for ids, _, _ in await asyncio.gather(*(collect(g) for g in gens))]


# --- the cache itself ---------------------------------------------------------------------------------------


def kv(length: int, seed: int) -> tuple[mx.array, mx.array]:
    mx.random.seed(seed)
    return mx.random.normal((1, 2, length, 32)), mx.random.normal((1, 2, length, 32))


def dequantized(cache: QuantizedKV) -> mx.array:
    assert cache.keys is not None
    keys, _ = cache.keys_and_values()
    return mx.dequantize(*keys, group_size=cache.group_size, bits=cache.bits)


def test_the_batched_quantized_cache_merges_extends_filters_and_extracts_each_sequence_intact() -> None:
    singles = []
    for length, seed in ((5, 1), (9, 2), (0, 3)):
        cache = QuantizedKV(32, 8)
        if length:
            cache.update_and_fetch(*kv(length, seed))
        singles.append(cache)
    batch = QuantizedKV.merge(singles[:2])
    batch.extend(QuantizedKV.merge(singles[2:]))
    # One decode step for all three, as BatchGenerator makes it.
    step_k, step_v = mx.random.normal((3, 2, 1, 32)), mx.random.normal((3, 2, 1, 32))
    batch.update_and_fetch(step_k, step_v)
    batch.filter([0, 2])
    first, third = batch.extract(0), batch.extract(1)

    expect = singles[0]
    expect.update_and_fetch(step_k[0:1], step_v[0:1])
    assert first.offset == 6 and third.offset == 1
    assert mx.array_equal(dequantized(first), dequantized(expect))
    lone = QuantizedKV(32, 8)
    lone.update_and_fetch(step_k[2:3], step_v[2:3])
    assert mx.array_equal(dequantized(third), dequantized(lone))


def test_a_prefill_step_attends_on_dequantized_values_and_a_decode_step_on_the_quantized_ones() -> None:
    batch = QuantizedKV.merge([QuantizedKV(32, 8)])
    keys, _ = batch.update_and_fetch(*kv(8, 7))
    # Several tokens: float arrays (MLX's fused float SDPA), the values the quantized ones stand for.
    assert not hasattr(batch, "bits") and isinstance(keys, mx.array) and keys.shape == (1, 2, 8, 32)
    stored, _ = batch.keys_and_values()
    assert mx.array_equal(keys, mx.dequantize(*stored, group_size=32, bits=8))
    keys, _ = batch.update_and_fetch(*kv(1, 8))
    assert batch.bits == 8 and isinstance(keys, tuple) and keys[0].shape[2] == 9


def test_quantized_values_stay_within_a_quantization_step_of_the_float_ones() -> None:
    keys, values = kv(64, 4)
    floats = BatchKVCache.merge([_float(keys, values)])
    quantized = BatchQuantizedKV.merge([_quantized(keys, values, 8)])
    fk, _ = floats.keys_and_values()
    qk, _ = quantized.keys_and_values()
    error = mx.abs(mx.dequantize(*qk, group_size=32, bits=8) - fk).max().item()
    assert error < 0.02  # 8 bits over a group's range of about 6 (normal values): a step of ~0.024


def _float(keys: mx.array, values: mx.array) -> KVCache:
    cache = KVCache()
    cache.update_and_fetch(keys, values)
    return cache


def _quantized(keys: mx.array, values: mx.array, bits: int) -> QuantizedKV:
    cache = QuantizedKV(32, bits)
    cache.update_and_fetch(keys, values)
    return cache


def test_caches_of_different_bits_are_never_batched_together() -> None:
    with pytest.raises(ValueError, match="different bits"):
        QuantizedKV.merge([_quantized(*kv(3, 5), 8), _quantized(*kv(3, 6), 4)])


def test_kv_settings_are_validated() -> None:
    assert kv_setting(None) == kv_setting(0) == FLOAT_KV
    assert kv_setting(4, 128) == KVSetting(4, 128)
    for bad in ((3, 64), (8, 48)):
        with pytest.raises(ValueError):
            kv_setting(*bad)


# --- through the engine -------------------------------------------------------------------------------------


def test_greedy_output_with_8_bit_kv_agrees_with_float_kv_on_most_tokens(tiny_models_dir: Path) -> None:
    prompts = [prompt(i) for i in range(8)]
    floats = run(tiny_models_dir, lambda e: answers(e, prompts), FLOAT_KV)
    eights = run(tiny_models_dir, lambda e: answers(e, prompts), EIGHT)
    same = sum(a == b for f, q in zip(floats, eights, strict=True) for a, b in zip(f, q, strict=True))
    total = sum(len(f) for f in floats)
    # Measured on these 8 prompts x 24 tokens: 168 of 192 agree (87.5%; tiny-qwen3 183, tiny-mistral 192). Random
    # weights leave close logits, and after the first differing token an answer goes its own way, so only a
    # floor is asserted.
    assert same / total >= 0.75, (same, total)


def test_eight_quantized_sequences_batch_as_each_runs_alone(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> tuple[list[list[int]], list[list[int]]]:
        alone = [(await answers(engine, [prompt(i)]))[0] for i in (2, 5)]
        batched = await answers(engine, [prompt(i) for i in range(8)])
        assert scheduler(engine).lm.kv == EIGHT
        return alone, [batched[2], batched[5]]

    alone, batched = run(tiny_models_dir, body, EIGHT, prefill_step_size=16, prefix_cache_bytes=0)
    assert alone == batched


def test_a_quantized_prefix_hit_answers_as_a_cold_quantized_run(tiny_models_dir: Path) -> None:
    head = tuple(range(300, 500))
    first, second = TextPrompt(token_ids=(*head, 7, 8, 9)), TextPrompt(token_ids=(*head, 11, 12))

    async def warm(engine: Engine) -> list[Any]:
        await answers(engine, [first])
        gen = await engine.generate("tiny-llama", second, GREEDY)
        ids, _, _ = await collect(gen)
        return [ids, gen.usage.cached_tokens, scheduler(engine).tiers.support.layers]

    cold = run(tiny_models_dir, lambda e: answers(e, [second]), EIGHT, prefix_cache_bytes=0)[0]
    ids, cached, layers = run(tiny_models_dir, warm, EIGHT, prefix_block_size=16)
    assert cached == 200  # the shared head
    assert ids == cold
    assert layers == {"QuantizedKV": 2}


def test_quantized_blocks_come_back_from_disk_and_never_serve_float_kv(tiny_models_dir: Path, tmp_path: Path) -> None:
    disk = {"disk_cache_dir": tmp_path / "kv", "disk_cache_bytes": 1 << 30, "prefix_block_size": 16}
    ask = TextPrompt(token_ids=tuple(range(300, 500)))

    async def once(engine: Engine) -> tuple[list[int], int, str | None]:
        gen = await engine.generate("tiny-llama", ask, GREEDY)
        ids, _, _ = await collect(gen)
        recent = scheduler(engine).cache.stats.recent
        return ids, gen.usage.cached_tokens, recent[-1]["tier"] if recent else None

    cold_8, _, _ = run(tiny_models_dir, once, EIGHT, **disk)  # written to disk at unload
    assert run(tiny_models_dir, once, EIGHT, **disk) == (cold_8, 199, "disk")
    cold_float = run(tiny_models_dir, once, FLOAT_KV, prefix_cache_bytes=0)[0]
    # The same prompt on float KV finds nothing on disk: its files are another model's.
    assert run(tiny_models_dir, once, FLOAT_KV, **disk) == (cold_float, 0, None)
    assert run(tiny_models_dir, once, KVSetting(4, 32), **disk)[1:] == (0, None)
    kinds = sorted(json.loads(p.read_text())["kv_bits"] or 0 for p in (tmp_path / "kv").glob("*/identity.json"))
    assert kinds == [0, 4, 8]


def test_a_model_quantizes_only_plain_attention_kv(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> dict[str, int]:
        await answers(engine, [prompt(1)], model="tiny-gemma3")
        return scheduler(engine, "tiny-gemma3").tiers.support.layers

    layers = run(tiny_models_dir, body, EIGHT)
    assert "QuantizedKV" in layers
    assert set(layers) <= {"QuantizedKV", "RotatingKVCache"}


def test_a_loaded_model_keeps_its_kv_setting_until_unloaded(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        entry = await engine.load("tiny-llama", kv=KVSetting(4, 32))
        assert scheduler(engine).lm.kv == KVSetting(4, 32)
        assert (await engine.load("tiny-llama")) is entry  # a plain load takes it as it is
        with pytest.raises(KVSettingConflict, match="4-bit"):
            await engine.load("tiny-llama", kv=FLOAT_KV)
        await engine.pool.unload("tiny-llama")
        await engine.load("tiny-llama", kv=FLOAT_KV)
        assert scheduler(engine).lm.kv == FLOAT_KV

    run(tiny_models_dir, body, EIGHT)


def test_a_request_s_kv_setting_loads_the_model_with_it_but_never_reloads_it(tiny_models_dir: Path) -> None:
    # A profile's kv_bits: applied when its request loads the model; a model already loaded keeps its own.
    async def body(engine: Engine) -> tuple[KVSetting, KVSetting]:
        ids, _, _ = await collect(await engine.generate("tiny-llama", prompt(1), GREEDY, Run(kv=KVSetting(4, 32))))
        assert ids
        first = scheduler(engine).lm.kv
        await collect(await engine.generate("tiny-llama", prompt(1), GREEDY, Run(kv=FLOAT_KV)))
        return first, scheduler(engine).lm.kv

    assert run(tiny_models_dir, body, EIGHT) == (KVSetting(4, 32), KVSetting(4, 32))


def test_the_memory_gate_counts_quantized_kv(tiny_models_dir: Path) -> None:
    # tiny-llama: 2 layers x K,V x 2 heads x 32 values; float32 4 bytes each, 8-bit 1 byte + a float32 scale and
    # bias per group of 32, 4-bit half a byte + the same.
    per_token = {FLOAT_KV: 2 * 2 * 2 * 32 * 4, EIGHT: 2 * 2 * 2 * (32 + 8), KVSetting(4, 32): 2 * 2 * 2 * (16 + 8)}
    for setting, size in per_token.items():
        entry = run(tiny_models_dir, lambda e: e.load("tiny-llama"), setting)
        assert (entry.plan.kv, entry.plan.kv_bytes_per_token) == (setting, size)
    # Room for the weights and 2048 tokens of 8-bit KV, not of float KV.
    weights = int((tiny_models_dir / "tiny-llama" / "model.safetensors").stat().st_size * 1.1)
    free = weights + 2048 * per_token[EIGHT] + 1
    assert run(tiny_models_dir, lambda e: e.load("tiny-llama"), EIGHT, free=free).plan.kv == EIGHT
    with pytest.raises(MemoryBudgetError, match="float KV for 2048 tokens"):
        run(tiny_models_dir, lambda e: e.load("tiny-llama"), FLOAT_KV, free=free)


def test_cache_support_names_the_quantized_layers(tiny_models_dir: Path) -> None:
    from mlx_lm import load

    model = load(str(tiny_models_dir / "tiny-llama"))[0]
    support = cache_support(model, EIGHT)
    assert support.reuse == "any-prefix" and support.layers == {"QuantizedKV": 2}
    assert "8-bit" in support.reason
    assert cache_support(model).layers == {"KVCache": 2}
