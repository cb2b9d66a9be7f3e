"""Attention through BLAS and NumPy's softmax on MLX's CPU backend gives what MLX's own kernel gives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm import load
from mlx_lm.models.cache import make_prompt_cache
from threadpoolctl import ThreadpoolController

from mlx_manager.engine import cpu_kernels
from mlx_manager.engine.cpu_dtype import on_cpu

pytestmark = pytest.mark.skipif(not on_cpu(), reason="installed only on MLX's CPU backend")
MLX_OWN = cast(
    Callable[..., mx.array],
    cpu_kernels._original if cpu_kernels.installed() else mx.fast.scaled_dot_product_attention,
)


@pytest.fixture
def mlx_own() -> Iterator[None]:
    """MLX's kernel for the reference, whatever another test's engine installed; restored after."""
    was = cpu_kernels.installed()
    cpu_kernels.install(False)
    yield
    cpu_kernels.install(was)


def qkv(
    b: int, h: int, kv: int, length: int, keys: int, dim: int = 32, dv: int | None = None, seed: int = 0
) -> tuple[mx.array, mx.array, mx.array]:
    mx.random.seed(seed)
    q = mx.random.normal((b, h, length, dim)) * 2
    k = mx.random.normal((b, kv, keys, dim)) * 2
    v = mx.random.normal((b, kv, keys, dv or dim))
    return q, k, v


def both(q: mx.array, k: mx.array, v: mx.array, mask: str | mx.array | None = None) -> tuple[np.ndarray, np.ndarray]:
    ours = cpu_kernels.attention(q, k, v, scale=q.shape[-1] ** -0.5, mask=mask)
    theirs = mx.fast.scaled_dot_product_attention(q, k, v, scale=q.shape[-1] ** -0.5, mask=mask)
    return np.array(ours.astype(mx.float32)), np.array(theirs.astype(mx.float32))


@pytest.fixture(autouse=True)
def every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_kernels, "MIN_SCORES", 0)  # the NumPy path even for these small shapes
    monkeypatch.setattr(cpu_kernels, "MIN_QUERIES", 0)


@pytest.mark.parametrize(
    ("b", "h", "kv", "length", "keys"),
    [(1, 4, 4, 17, 17), (2, 8, 2, 5, 300), (1, 6, 1, 40, 90), (3, 4, 2, 1, 257)],
    ids=["multi-head", "grouped", "multi-query", "decode-step"],
)
def test_matches_mlx_for_head_layouts_and_causal_masks(
    mlx_own: None, b: int, h: int, kv: int, length: int, keys: int
) -> None:
    q, k, v = qkv(b, h, kv, length, keys)
    for mask in (None, "causal"):
        ours, theirs = both(q, k, v, mask)
        np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("block_rows", [None, 2], ids=["whole", "row-blocks"])
def test_matches_mlx_for_a_left_padded_batch_mask_and_a_row_that_sees_nothing(
    mlx_own: None, monkeypatch: pytest.MonkeyPatch, block_rows: int | None
) -> None:
    if block_rows:
        monkeypatch.setattr(cpu_kernels, "BLOCK_SCORES", 2 * 20 * block_rows)  # each block its own masked span
    q, k, v = qkv(2, 4, 2, 6, 20)
    keep = np.ones((2, 1, 6, 20), bool)
    keep[0, :, :, :5] = False  # left padding of the first sequence
    keep[..., 15:] = np.tril(np.ones((6, 5), bool))[None, None, :, :5] | np.eye(6, 5, k=0, dtype=bool)[None, None]
    keep[1, :, 0, :] = False  # a padded query sees nothing: MLX spreads it evenly over all keys
    ours, theirs = both(q, k, v, mx.array(keep))
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-4)
    evenly = np.array(v[1].mean(axis=1))
    np.testing.assert_allclose(ours[1, :, 0], np.repeat(evenly, 2, axis=0), atol=1e-5)


def test_matches_mlx_for_additive_masks_and_a_value_width_of_its_own(mlx_own: None) -> None:
    q, k, v = qkv(1, 4, 2, 7, 33, dim=16, dv=24)
    bias = mx.array(np.random.default_rng(1).normal(size=(1, 4, 7, 33)).astype(np.float32))
    ours, theirs = both(q, k, v, bias)
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_inputs_are_computed_in_float32_and_come_back_in_their_dtype(
    mlx_own: None, dtype: mx.Dtype
) -> None:
    q, k, v = qkv(1, 4, 2, 9, 40)
    q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
    out = cpu_kernels.attention(q, k, v, scale=0.25, mask="causal")
    assert out.dtype == dtype
    exact = MLX_OWN(*(x.astype(mx.float32) for x in (q, k, v)), scale=0.25, mask="causal")
    # Within a rounding of the float32 result, and no further from it than MLX's own half-precision kernel.
    ours = np.abs(np.array(out.astype(mx.float32) - exact))
    theirs = np.abs(np.array(MLX_OWN(q, k, v, scale=0.25, mask="causal").astype(mx.float32) - exact))
    assert ours.max() <= np.abs(np.array(exact)).max() * (2e-3 if dtype == mx.float16 else 8e-3)
    assert ours.max() <= theirs.max()


def test_long_prompts_are_taken_in_row_blocks_with_the_same_result(
    mlx_own: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, k, v = qkv(2, 4, 2, 50, 80)
    whole, theirs = both(q, k, v, "causal")
    monkeypatch.setattr(cpu_kernels, "BLOCK_SCORES", 2 * 80 * 7)  # 7 query rows a block (2 heads a key head)
    blocks, _ = both(q, k, v, "causal")
    np.testing.assert_allclose(blocks, whole, atol=1e-5)  # BLAS sums in another order for other shapes
    np.testing.assert_allclose(blocks, theirs, atol=2e-5, rtol=1e-4)


def test_what_it_does_not_cover_goes_to_mlx(mlx_own: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> mx.array:
        calls.append(kwargs.get("sinks"))
        return MLX_OWN(*args, **kwargs)

    monkeypatch.setattr(cpu_kernels, "_fast_sdpa", counted)
    q, k, v = qkv(1, 4, 2, 3, 10)
    cpu_kernels.attention(q, k, v, scale=0.5, mask=None, sinks=mx.zeros((4,)))  # attention sinks
    monkeypatch.setattr(cpu_kernels, "MIN_SCORES", 10_000)
    cpu_kernels.attention(q, k, v, scale=0.5, mask="causal")  # a small one
    monkeypatch.setattr(cpu_kernels, "MIN_SCORES", 0)
    monkeypatch.setattr(cpu_kernels, "MIN_QUERIES", 16)
    q, k, v = qkv(2, 4, 2, 1, 4000)
    cpu_kernels.attention(q, k, v, scale=0.5, mask=None)  # a small decode step keeps mlx-lm's step asynchronous
    assert len(calls) == 3
    q, k, v = qkv(16, 4, 2, 1, 4100)
    cpu_kernels.attention(q, k, v, scale=0.5, mask=None)  # a large batch over a long context does not
    assert len(calls) == 3
    # Inside mx.compile nothing may be evaluated: MLX's own runs there, with the same result.
    compiled = mx.compile(lambda a, b, c: cpu_kernels.attention(a, b, c, scale=0.5, mask=None))
    q, k, v = qkv(1, 4, 2, 30, 400)
    monkeypatch.setattr(cpu_kernels, "MIN_SCORES", 0)
    np.testing.assert_allclose(np.array(compiled(q, k, v)), np.array(MLX_OWN(q, k, v, scale=0.5)), atol=1e-6)


def test_install_routes_mlx_fast_through_it_and_uninstall_restores_mlx(mlx_own: None) -> None:
    def numpy_blas_threads() -> list[int]:
        return [c.num_threads for c in ThreadpoolController().lib_controllers if "numpy" in c.filepath]

    before = numpy_blas_threads()
    assert mx.fast.scaled_dot_product_attention is MLX_OWN
    assert cpu_kernels.install(True) and cpu_kernels.install(True)  # idempotent
    assert mx.fast.scaled_dot_product_attention is cpu_kernels.attention
    # Blocks run one per core, so NumPy's own BLAS must not start threads of its own on top.
    assert numpy_blas_threads() == [1] * len(before)
    assert not cpu_kernels.install(False)
    assert mx.fast.scaled_dot_product_attention is MLX_OWN
    assert numpy_blas_threads() == before


def test_a_models_logits_over_a_long_prompt_are_those_of_mlx(mlx_own: None, tiny_models: dict[str, Path]) -> None:
    model = load(str(tiny_models["tiny-qwen3"]))[0]
    prompt = mx.array([[(i * 37) % 500 + 3 for i in range(300)]])

    def logits() -> np.ndarray:
        cache = make_prompt_cache(model)
        first = model(prompt[:, :200], cache=cache)  # a prefix, then a chunk over the cached prefix
        rest = model(prompt[:, 200:], cache=cache)
        return np.concatenate([np.array(first), np.array(rest)], axis=1)

    theirs = logits()
    cpu_kernels.install(True)
    ours = logits()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() > 0.99


def test_swiglu_matches_mlx_lm_and_install_rebinds_it_in_the_model_modules(mlx_own: None) -> None:
    import mlx_lm.models.activations as activations
    import mlx_lm.models.llama as llama

    mx.random.seed(3)
    gate, up = mx.random.normal((2, 100, 700)) * 30, mx.random.normal((2, 100, 700))  # large gates: exp overflows
    ours, theirs = np.array(cpu_kernels.swiglu(gate, up)), np.array(activations.swiglu(gate, up))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not np.isnan(ours).any()
    small = mx.random.normal((1, 1, 64))
    np.testing.assert_array_equal(
        np.array(cpu_kernels.swiglu(small, small)), np.array(activations.swiglu(small, small))
    )
    cpu_kernels.install(True)
    assert llama.swiglu is cpu_kernels.swiglu and activations.swiglu is cpu_kernels.swiglu
    cpu_kernels.install(False)
    assert llama.swiglu is cpu_kernels._original_swiglu and activations.swiglu is cpu_kernels._original_swiglu


def test_batched_decode_leaves_the_next_step_lazy_and_gives_the_same_tokens(
    mlx_own: None, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlx_lm.generate import BatchGenerator

    model = load(str(tiny_models["tiny-qwen3"]))[0]
    started: list[int] = []
    real_async_eval = mx.async_eval

    def counted(*arrays: Any) -> None:
        started.append(1)
        real_async_eval(*arrays)

    monkeypatch.setattr(mx, "async_eval", counted)

    def tokens() -> list[list[int]]:
        batch = BatchGenerator(model, completion_batch_size=4, prefill_batch_size=4)
        uids = batch.insert([[5, 9, 13, 40, 7], [3, 3, 8]], max_tokens=[6, 6])
        out: dict[int, list[int]] = {uid: [] for uid in uids}
        while any(len(t) < 6 for t in out.values()):
            for r in batch.next()[1]:
                out[r.uid].append(r.token)
        batch.close()
        return list(out.values())

    pipelined = tokens()
    assert started  # mlx-lm starts each next step before handing out the current tokens
    started.clear()
    cpu_kernels.install(True)
    # On the CPU that start would run the step at once: the tokens wait for it instead of going out first.
    assert tokens() == pipelined and not started
