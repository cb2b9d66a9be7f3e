"""Attention and SwiGLU on MLX's CPU backend through NumPy, on every core.

MLX's CPU build runs mx.fast.scaled_dot_product_attention unfused, single-threaded outside its BLAS, and its exp
is scalar: on a 2-core x86 machine a 440-token prefill over a 3,400-token context of SmolLM2 spends 7.3 of its
9.5 s in the softmax's exp, and 0.37 s in SwiGLU's sigmoid. Here attention runs in NumPy (SIMD exp, its own BLAS)
in blocks of query rows small enough that the scores stay in cache, one block per core, skipping keys a causal
mask hides: that prefill takes 1.5 s. Installed only while MLX computes on the CPU; on Metal and CUDA the fused
kernels stay. The server does not train: under mx.grad these paths would give no gradient (uninstall first)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import mlx.core as mx
import mlx_lm.models.activations as activations
import numpy as np
from threadpoolctl import ThreadpoolController

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
# Scores a block of query rows computes at once (2 MiB: half a core's L2 here), so its softmax and second matmul
# read them from cache; blocks run on all cores.
BLOCK_SCORES = 1 << 19
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# SwiGLU inputs smaller than this (a decode step's) stay on MLX.
MIN_ACTIVATIONS = 1 << 16
# Tells a distributed rank (its own process) whether to install these: "numpy" or "mlx", as the server runs them.
KERNELS_VARIABLE = "MLX_MANAGER_CPU_KERNELS"
_HIDDEN = np.finfo(np.float32).min
_FLOATS = (mx.float32, mx.float16, mx.bfloat16)

_original: Callable[..., mx.array] | None = None
_pool: ThreadPoolExecutor | None = None
_numpy_blas: Any = None  # threadpoolctl's limiter on NumPy's own BLAS while installed
_original_swiglu: Callable[[mx.array, mx.array], mx.array] = activations.swiglu
# The module: `import mlx_lm.generate` names the function mlx_lm exports under that name.
_generate: Any = importlib.import_module("mlx_lm.generate")


def install(enabled: bool = True) -> bool:
    """Route MLX's attention and mlx-lm's SwiGLU through this module (CPU only); False: MLX's own again.
    Returns whether it is installed."""
    global _original, _numpy_blas
    if enabled and _original is None and on_cpu():
        _original = mx.fast.scaled_dot_product_attention
        mx.fast.scaled_dot_product_attention = attention
        _rebind_swiglu(_original_swiglu, swiglu)
        _generate.mx = _LazySteps(mx)
        # Attention blocks run one per core, each calling NumPy's BLAS (its own copy, not MLX's).
        blas = ThreadpoolController()
        bundled = [c.filepath for c in blas.lib_controllers if "numpy" in c.filepath]
        _numpy_blas = blas.select(filepath=bundled).limit(limits=1) if bundled else None
        log.info("On the CPU: attention and SwiGLU through NumPy on %d cores (cpu_kernels = numpy)", THREADS)
    elif not enabled and _original is not None:
        mx.fast.scaled_dot_product_attention = _original
        _original = None
        _rebind_swiglu(swiglu, _original_swiglu)
        _generate.mx = mx
        if _numpy_blas is not None:
            _numpy_blas.restore_original_limits()
            _numpy_blas = None
    return _original is not None


def installed() -> bool:
    return _original is not None


class _LazySteps:
    """mlx.core as mlx-lm's generate module sees it, save that async_eval leaves the graph lazy. mlx-lm starts the
    next decode step before handing out this step's tokens; on the CPU that start runs nearly the whole step (MLX
    keeps only a few tasks in flight), so every token, the first after a prefill included, would wait a step.
    Lazy, the next step runs when its tokens are asked for: same tokens, one step sooner."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    @staticmethod
    def async_eval(*arrays: Any) -> None:
        return None


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
    arrays = [q.astype(mx.float32) * scale, k.astype(mx.float32), v.astype(mx.float32)]
    if isinstance(mask, mx.array):
        arrays.append(mask.astype(mx.float32) if mask.dtype in (mx.float16, mx.bfloat16) else mask)
    try:
        mx.eval(arrays)  # refused inside mx.compile / vmap, where MLX's own must run
        queries, keys, values, *masks = (np.asarray(a) for a in arrays)
    except ValueError:
        return original(q, k, v, scale=scale, mask=mask, sinks=sinks)
    b, h, length, _ = queries.shape
    groups, rep = keys.shape[1], h // keys.shape[1]
    plan = _Plan(masks[0] if masks else cast(str | None, mask), length, keys.shape[2], rep)
    out = np.empty((b, h, length, values.shape[-1]), np.float32)

    def block(i: int, group: int, start: int) -> None:
        # The `rep` heads sharing a key head are one matmul: rows (head, query) over the keys they may see.
        stop = min(start + plan.rows, length)
        heads = slice(group * rep, (group + 1) * rep)
        limit = plan.limit(i, start, stop)
        rows = queries[i, heads, start:stop].reshape(-1, queries.shape[-1])
        scores = rows @ keys[i, group, :limit].T
        total = plan.softmax(scores.reshape(rep, stop - start, limit), i, start, stop)
        mixed = scores @ values[i, group, :limit]
        mixed /= total.reshape(-1, 1)
        out[i, heads, start:stop] = mixed.reshape(rep, stop - start, -1)

    _each(block, [(i, g, s) for i in range(b) for g in range(groups) for s in range(0, length, plan.rows)])
    return mx.array(out).astype(q.dtype)


class _Plan:
    """Which keys a block of query rows sees and the softmax over them, for a mask given as "causal", None, a
    boolean array (True attends) or an additive one. Hidden keys get float32's lowest score, as in MLX: a row that
    sees no key (a padded query) attends all of them evenly instead of making NaNs."""

    def __init__(self, mask: str | np.ndarray | None, length: int, keys: int, rep: int) -> None:
        self.keys, self.offset = keys, keys - length  # queries are the last `length` of `keys` positions
        self.rows = max(1, min(length, BLOCK_SCORES // (rep * keys)))
        self.causal = isinstance(mask, str)  # _covered lets no other string through
        self.mask: np.ndarray | None = None
        self.spans: dict[tuple[int, int], tuple[int, int, int]] = {}
        if isinstance(mask, np.ndarray):
            full = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)[:, 0]  # one for every head (_covered)
            self.mask = np.broadcast_to(full, (full.shape[0], length, keys))
            if mask.dtype == np.bool_:
                for i in range(self.mask.shape[0]):
                    for start in range(0, length, self.rows):
                        self.spans[i, start] = _spans(self.mask[i, start : start + self.rows])

    def limit(self, i: int, start: int, stop: int) -> int:
        """Keys past this one are hidden from rows start..stop (the causal future): they are not computed."""
        if self.causal:
            return self.offset + stop
        if self.spans:
            return self.spans[self._row(i), start][0]
        return self.keys

    def _row(self, i: int) -> int:
        return i if self.mask is not None and self.mask.shape[0] > 1 else 0

    def softmax(self, scores: np.ndarray, i: int, start: int, stop: int) -> np.ndarray:
        """exp(scores - row max) in place over (heads, rows, keys); returns the row sums (heads, rows, 1)."""
        if self.causal:
            seen = self.offset + start + 1  # every row sees keys before this one
            if seen < scores.shape[-1]:
                positions = np.arange(self.offset + start, self.offset + stop)[:, None]
                future = np.arange(seen, scores.shape[-1])[None, :] > positions
                np.copyto(scores[..., seen:], _HIDDEN, where=future)
        elif self.mask is not None:
            keep = self.mask[self._row(i), start:stop, : scores.shape[-1]]
            if keep.dtype == np.bool_:
                _, open_start, open_end = self.spans[self._row(i), start]
                for cols in (slice(0, open_start), slice(open_end, None)):
                    np.copyto(scores[..., cols], _HIDDEN, where=~keep[:, cols])
            else:
                scores += keep
        top = scores.max(axis=-1, keepdims=True)
        top[~np.isfinite(top)] = 0.0  # an additive mask of -inf over a whole row: zeros rather than NaN
        scores -= top
        np.exp(scores, out=scores)
        total = scores.sum(axis=-1, keepdims=True)
        total[total == 0] = 1.0
        return total


def _spans(keep: np.ndarray) -> tuple[int, int, int]:
    """For a boolean (rows, keys) mask: the keys worth computing (through the last any row sees, or all when a row
    sees none), and the span [start, end) every row sees, which needs no masking."""
    seen_by_any = keep.any(axis=0)
    (seen,) = np.nonzero(seen_by_any)
    limit = int(seen[-1]) + 1 if len(seen) and keep.any(axis=1).all() else keep.shape[1]
    (open_,) = np.nonzero(keep[:, :limit].all(axis=0))
    if not len(open_) or open_[-1] - open_[0] + 1 != len(open_):
        return limit, 0, 0
    return limit, int(open_[0]), int(open_[-1]) + 1


def _each(work: Callable[[int, int, int], None], blocks: list[tuple[int, int, int]]) -> None:
    """Runs the blocks on the cores: NumPy's BLAS and ufuncs release the GIL, and its BLAS runs one thread per call
    (install), so the cores are not oversubscribed. Blocks are dealt round-robin: causal blocks grow down the rows."""

    def share(part: list[tuple[int, int, int]]) -> None:
        for args in part:
            work(*args)

    if THREADS == 1 or len(blocks) == 1:
        share(blocks)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="cpu-kernels")
    list(_pool.map(share, [blocks[n::THREADS] for n in range(THREADS)]))


def _fast_sdpa(*args: Any, **kwargs: Any) -> mx.array:
    return mx.fast.scaled_dot_product_attention(*args, **kwargs)


def _covered(q: mx.array, k: mx.array, v: mx.array, mask: str | mx.array | None) -> bool:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or q.dtype not in _FLOATS:
        return False
    b, h, length, _ = q.shape
    if k.shape[1] == 0 or h % k.shape[1] or (isinstance(mask, str) and (mask != "causal" or length > k.shape[2])):
        return False
    if isinstance(mask, mx.array) and (mask.ndim > 4 or (mask.ndim == 4 and mask.shape[1] > 1)):
        return False  # a mask of its own per head
    scores = b * h * length * k.shape[2]
    return scores >= MIN_SCORES and (length >= MIN_QUERIES or scores >= MIN_DECODE_SCORES)
