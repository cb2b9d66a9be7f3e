"""Attention and SwiGLU on MLX's CPU backend through NumPy's vectorised exp.

MLX's CPU build runs mx.fast.scaled_dot_product_attention unfused, and its exp is scalar and single-threaded: on a
2-core x86 machine a 440-token prefill over a 3,400-token context of SmolLM2 spends 7.3 of its 9.5 s in the
softmax's exp, and 0.37 s in SwiGLU's sigmoid. Here the matmuls stay on MLX (its BLAS) and the exp-heavy parts run
in NumPy (SIMD): that prefill takes 2.7 s. Installed only while MLX computes on the CPU; on Metal and CUDA the
fused kernels stay. The server does not train: under mx.grad these paths would give no gradient (uninstall first).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx_lm.models.activations as activations
import numpy as np

from mlx_manager.engine.cpu_dtype import on_cpu

log = logging.getLogger(__name__)

# Below this many attention scores (batch x heads x queries x keys) MLX's own is as fast: NumPy's per-call cost
# (an evaluation per layer) outweighs the exp it saves.
MIN_SCORES = 1 << 13
# Small decode steps (and speculative verification) keep MLX's kernel: evaluating inside the forward makes mlx-lm's
# asynchronous decode step synchronous (a token reaches the client a step later), which only a large batch over a
# long context repays (16 sequences at 3,400 tokens: 34 -> 20 ms a layer).
MIN_QUERIES = 16
MIN_DECODE_SCORES = 1 << 18
# Scores computed at once; longer prompts are taken in row blocks so memory stays bounded.
BLOCK_SCORES = 1 << 23
# SwiGLU inputs smaller than this (a decode step's) stay on MLX.
MIN_ACTIVATIONS = 1 << 16
# Tells a distributed rank (its own process) whether to install these: "numpy" or "mlx", as the server runs them.
KERNELS_VARIABLE = "MLX_MANAGER_CPU_KERNELS"
_HIDDEN = np.finfo(np.float32).min
_FLOATS = (mx.float32, mx.float16, mx.bfloat16)

_original: Callable[..., mx.array] | None = None
_original_swiglu: Callable[[mx.array, mx.array], mx.array] = activations.swiglu


def install(enabled: bool = True) -> bool:
    """Route MLX's attention and mlx-lm's SwiGLU through this module (CPU only); False: MLX's own again.
    Returns whether it is installed."""
    global _original
    if enabled and _original is None and on_cpu():
        _original = mx.fast.scaled_dot_product_attention
        mx.fast.scaled_dot_product_attention = attention
        _rebind_swiglu(_original_swiglu, swiglu)
        log.info("On the CPU: attention and SwiGLU through NumPy's vectorised exp (cpu_kernels = numpy)")
    elif not enabled and _original is not None:
        mx.fast.scaled_dot_product_attention = _original
        _original = None
        _rebind_swiglu(swiglu, _original_swiglu)
    return _original is not None


def installed() -> bool:
    return _original is not None


def _rebind_swiglu(old: object, new: object) -> None:
    """mlx-lm's model modules import swiglu by name: rebind it in those loaded so far and in activations, where
    modules loaded later take it from."""
    for name, module in list(sys.modules.items()):
        if (name.startswith("mlx_lm.models.") or name == "mlx_lm.models") and getattr(module, "swiglu", None) is old:
            module.__dict__["swiglu"] = new


def swiglu(gate: mx.array, x: mx.array) -> mx.array:
    """silu(gate) * x, as mlx-lm's activations.swiglu."""
    if gate.size < MIN_ACTIVATIONS or gate.shape != x.shape or gate.dtype != mx.float32 or x.dtype != mx.float32:
        return _original_swiglu(gate, x)
    try:
        g, up = np.asarray(gate), np.asarray(x)  # refused inside mx.compile, where MLX's own runs
    except ValueError:
        return _original_swiglu(gate, x)
    out = np.negative(g)
    with np.errstate(over="ignore"):  # exp(-gate) overflows for a very negative gate: silu is then -0
        np.exp(out, out=out)
    out += 1.0
    np.divide(g, out, out=out)
    out *= up
    return mx.array(out)


def attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    scale: float,
    mask: str | mx.array | None = None,
    sinks: mx.array | None = None,
    **kwargs: Any,
) -> mx.array:
    """mx.fast.scaled_dot_product_attention's contract; what this path does not cover goes to MLX's own."""
    original = _original or _fast_sdpa
    if sinks is not None or kwargs or not _covered(q, k, v, mask):
        return original(q, k, v, scale=scale, mask=mask, sinks=sinks, **kwargs)
    b, h, length, dim = q.shape
    kv, keys = k.shape[1], k.shape[2]
    rep = h // kv
    grouped = (q.astype(mx.float32) * scale).reshape(b, kv, rep, length, dim)
    k_t = k.astype(mx.float32).swapaxes(-1, -2)[:, :, None]
    v32 = v.astype(mx.float32)[:, :, None]
    try:
        # Evaluates the graph up to here; refused inside mx.compile / vmap, where MLX's own must run.
        keep = causal(length, keys) if isinstance(mask, str) else None if mask is None else _numpy(mask)
        rows = max(1, BLOCK_SCORES // (b * h * keys))
        parts = [_block(grouped[..., r : r + rows, :], k_t, v32, keep, r) for r in range(0, length, rows)]
    except ValueError:
        return original(q, k, v, scale=scale, mask=mask, sinks=sinks)
    out = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=3)
    return out.reshape(b, h, length, -1).astype(q.dtype)


def _block(q: mx.array, k_t: mx.array, v: mx.array, keep: np.ndarray | None, row: int) -> mx.array:
    """Queries `row`.. of q (B, KV, rep, rows, D): the matmuls on MLX's BLAS, the softmax in NumPy, in place on
    the scores MLX computed (a second BLAS thread pool in the process would fight MLX's for the cores)."""
    scores = q @ k_t  # (B, KV, rep, rows, S)
    mx.eval(scores)
    grid = np.asarray(scores)  # MLX's buffer, writable: nothing else holds these scores
    b, kv, rep, rows, keys = grid.shape
    if keep is not None:
        keep = np.broadcast_to(keep, (b, kv * rep, keep.shape[-2], keys))[:, :, row : row + rows]
        keep = keep.reshape(b, kv, rep, rows, keys)
    total = softmax_in_place(grid, keep)
    return (scores @ v) / mx.array(total)


def _fast_sdpa(*args: Any, **kwargs: Any) -> mx.array:
    return mx.fast.scaled_dot_product_attention(*args, **kwargs)


def _covered(q: mx.array, k: mx.array, v: mx.array, mask: str | mx.array | None) -> bool:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or q.dtype not in _FLOATS:
        return False
    b, h, length, _ = q.shape
    if k.shape[1] == 0 or h % k.shape[1] or (isinstance(mask, str) and mask != "causal"):
        return False
    scores = b * h * length * k.shape[2]
    return scores >= MIN_SCORES and (length >= MIN_QUERIES or scores >= MIN_DECODE_SCORES)


def _numpy(x: mx.array) -> np.ndarray:
    if x.dtype in (mx.float16, mx.bfloat16):
        x = x.astype(mx.float32)
    return np.asarray(x)


def causal(queries: int, keys: int) -> np.ndarray:
    """Which keys each query sees when the queries are the last `queries` of `keys` positions."""
    return np.arange(keys)[None, :] <= np.arange(queries)[:, None] + (keys - queries)


def softmax_in_place(scores: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """exp(scores - row max) in place over the last axis, hiding what `keep` (bool: True attends; else additive)
    does not; returns the row sums. Hidden keys get float32's lowest score, as MLX does: a row that sees no key
    (a padded query) attends all of them evenly instead of making NaNs."""
    if keep is not None and keep.dtype == np.bool_:
        for i in np.ndindex(scores.shape[:2]):
            # Causal and padding masks hide keys only at the edges: apply them outside the span all rows see.
            start, end = _open_span(keep[i])
            for cols in (slice(0, start), slice(end, None)) if end else (slice(None),):
                np.copyto(scores[i][..., cols], _HIDDEN, where=~keep[i][..., cols])
    elif keep is not None:
        scores += keep
    top = scores.max(axis=-1, keepdims=True)
    top[~np.isfinite(top)] = 0.0  # an additive mask of -inf over a whole row: zeros rather than NaN
    scores -= top
    np.exp(scores, out=scores)
    total = scores.sum(axis=-1, keepdims=True)
    total[total == 0] = 1.0
    return total


def _open_span(keep: np.ndarray) -> tuple[int, int]:
    """Columns [start, end) that every row of a boolean (..., rows, S) mask attends; (0, 0): none."""
    flat = keep.reshape(-1, keep.shape[-1]) if keep.flags.c_contiguous else keep
    seen = flat.all(axis=tuple(range(flat.ndim - 1)))
    (open_,) = np.nonzero(seen)
    if not len(open_) or open_[-1] - open_[0] + 1 != len(open_):
        return 0, 0
    return int(open_[0]), int(open_[-1]) + 1
