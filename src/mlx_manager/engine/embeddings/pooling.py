"""Token states to one vector per sequence, as sentence-transformers' Pooling and Normalize modules do."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from mlx_manager.engine.embeddings.detect import Pooling


def pool(hidden: mx.array, mask: mx.array, mode: Pooling) -> mx.array:
    """(B, T, H) states and a (B, T) 0/1 mask of real tokens (right-padded) to (B, H), in float32."""
    hidden = hidden.astype(mx.float32)
    weights = mask.astype(mx.float32)[..., None]
    lengths = weights.sum(axis=1)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.astype(mx.int32).sum(axis=1) - 1
        return mx.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    if mode == "max":
        return mx.where(weights > 0, hidden, -mx.inf).max(axis=1)
    summed = (hidden * weights).sum(axis=1)
    if mode == "mean_sqrt_len":
        return summed / mx.sqrt(mx.maximum(lengths, 1.0))
    # sentence-transformers clamps the token count at 1e-9; a sequence always has at least one token here.
    return summed / mx.maximum(lengths, 1e-9)


def l2_normalize(x: mx.array) -> mx.array:
    # Same epsilon as torch.nn.functional.normalize, so an all-zero vector stays zero.
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def truncate_dimensions(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka truncation: keep the first `dimensions` values and rescale each vector to unit length."""
    cut = np.ascontiguousarray(vectors[:, :dimensions], dtype=np.float32)
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.maximum(norms, 1e-12)
