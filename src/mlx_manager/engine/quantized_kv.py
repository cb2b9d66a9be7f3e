"""A quantized KV cache that BatchGenerator can batch: keys and values kept as MLX affine-quantized triples.

mlx-lm's QuantizedKVCache serves one sequence and has no batched form, so BatchGenerator cannot merge, filter,
extend or extract it. `BatchQuantizedKV` mirrors mlx-lm's BatchKVCache (left padding, per-sequence offsets)
over (packed uint32, scales, biases) triples; `QuantizedKV` is the one-sequence cache it is merged from and
extracted to, which the prefix cache copies, trims and stores.

mlx-lm's attention (mlx_lm.models.base.scaled_dot_product_attention) computes on the quantized triples when the
cache has `bits`, else with MLX's fused float SDPA. A decode step (one token per sequence) takes the quantized
path; a prefill step of several tokens gets the keys and values dequantized instead: the same values, and on
MLX's CPU backend the fused float SDPA is ~3.5x faster than quantized matmuls for 512 queries (at one query the
quantized path is as fast or faster, and reads no float copy).
"""

from __future__ import annotations

from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_map
from mlx_lm.models.base import create_causal_mask
from mlx_lm.models.cache import QuantizedKVCache, _BaseCache, dynamic_roll

Triple = tuple[mx.array, mx.array, mx.array]


def _zeros_like_along(parts: Triple, batch: int, length: int) -> Triple:
    """Empty (zero) room for `length` positions of `batch` sequences, shaped like `parts` on the other axes."""
    return tuple(mx.zeros((batch, p.shape[1], length, p.shape[3]), dtype=p.dtype) for p in parts)  # type: ignore[return-value]


class QuantizedKV(QuantizedKVCache):
    """One sequence's quantized KV; `merge` makes the batched cache of several."""

    keys: Triple | None  # type: ignore[assignment]  # mlx-lm's class leaves them untyped (None)
    values: Triple | None  # type: ignore[assignment]

    def size(self) -> int:
        return int(self.offset)

    @property
    def state(self) -> tuple[Any, ...]:
        # Only the positions in use: a trimmed or preallocated buffer would be stored with its unused room.
        keys, values = self.keys, self.values
        if keys is not None and self.offset < keys[0].shape[2]:
            keys, values = tree_map(lambda x: x[..., : self.offset, :], (keys, values))
        return keys, values, self.offset, self.group_size, self.bits

    @state.setter
    def state(self, v: Any) -> None:
        keys, values, offset, group_size, bits = v
        # A state read from a file holds lists; attention and the merge take the triples as tuples.
        self.keys = tuple(keys) if keys is not None else None
        self.values = tuple(values) if values is not None else None
        self.offset, self.group_size, self.bits = int(offset), int(group_size), int(bits)

    @property
    def nbytes(self) -> int:
        if self.keys is None or self.values is None:
            return 0
        return sum(int(x.nbytes) for x in (*self.keys, *self.values))

    @classmethod
    def merge(cls, caches: list[QuantizedKV]) -> BatchQuantizedKV:
        return BatchQuantizedKV.merge(caches)


class BatchQuantizedKV(_BaseCache):
    """Quantized keys and values of a left-padded batch, as mlx-lm's BatchKVCache keeps float ones."""

    step = 256

    def __init__(self, left_padding: list[int], group_size: int, bits: int) -> None:
        self.keys: Triple | None = None
        self.values: Triple | None = None
        self.left_padding = mx.array(left_padding)
        self.offset = mx.array([-p for p in left_padding])
        self._idx = 0
        self._right_padding: mx.array | None = None
        self.group_size = group_size
        self._bits = bits
        self._float_step = False  # the last update was several tokens: attention gets float K/V

    @property
    def bits(self) -> int:
        # Hidden for a multi-token step, so that mlx-lm's attention takes its float path (see the module doc).
        if self._float_step:
            raise AttributeError("bits")
        return self._bits

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[Any, Any]:
        """Store the new positions quantized; return every position's keys and values, quantized triples for a
        one-token step, dequantized arrays for a longer one."""
        batch, _, steps, _ = keys.shape
        prev = self._idx
        qk = mx.quantize(keys, group_size=self.group_size, bits=self._bits)
        qv = mx.quantize(values, group_size=self.group_size, bits=self._bits)
        if self.keys is None or self.values is None or prev + steps > self.keys[0].shape[2]:
            room = (self.step + steps - 1) // self.step * self.step
            new_k, new_v = _zeros_like_along(qk, batch, room), _zeros_like_along(qv, batch, room)
            if self.keys is None or self.values is None:
                self.keys, self.values = new_k, new_v
            else:
                old_k, old_v = self.keys, self.values
                if prev % self.step != 0:
                    old_k, old_v = tree_map(lambda x: x[..., :prev, :], (old_k, old_v))
                self.keys = tuple(mx.concatenate([a, b], axis=2) for a, b in zip(old_k, new_k, strict=True))  # type: ignore[assignment]
                self.values = tuple(mx.concatenate([a, b], axis=2) for a, b in zip(old_v, new_v, strict=True))  # type: ignore[assignment]
        self.offset = self.offset + steps
        self._idx += steps
        assert self.keys is not None and self.values is not None
        for i in range(3):
            self.keys[i][..., prev : self._idx, :] = qk[i]
            self.values[i][..., prev : self._idx, :] = qv[i]
        self._float_step = steps > 1
        if self._float_step:
            stored_k, stored_v = self.keys_and_values()
            return self._dequantize(stored_k), self._dequantize(stored_v)
        return self.keys_and_values()

    def _dequantize(self, parts: Triple) -> mx.array:
        return mx.dequantize(parts[0], parts[1], parts[2], group_size=self.group_size, bits=self._bits)

    def keys_and_values(self) -> tuple[Triple, Triple]:
        assert self.keys is not None and self.values is not None
        return cast(tuple[Triple, Triple], tree_map(lambda x: x[..., : self._idx, :], (self.keys, self.values)))

    def prepare(
        self,
        *,
        left_padding: list[int] | None = None,
        lengths: list[int] | None = None,
        right_padding: list[int] | None = None,
    ) -> None:
        if left_padding is not None:
            if self.keys is not None:
                raise ValueError("Left padding can only be added to an empty BatchQuantizedKV")
            pad = mx.array(left_padding)
            self.left_padding += pad
            self.offset = self.offset - pad
        if right_padding is not None and max(right_padding) > 0:
            self._right_padding = mx.array(right_padding)

    def finalize(self) -> None:
        # Right-padded prompts of unequal length: roll each row so its padding moves to the left.
        if self._right_padding is None or self.keys is None or self.values is None:
            self._right_padding = None
            return
        shift = self._right_padding[:, None]
        self.keys, self.values = tree_map(lambda x: dynamic_roll(x, shift, axis=2), (self.keys, self.values))
        self.offset = self.offset - self._right_padding
        self.left_padding += self._right_padding
        self._right_padding = None

    @property
    def state(self) -> tuple[Any, ...]:
        return self.keys, self.values, self.offset, self.left_padding, self._idx

    @state.setter
    def state(self, v: Any) -> None:
        self.keys, self.values, self.offset, self.left_padding, self._idx = v

    def is_trimmable(self) -> bool:
        return True

    def trim(self, n: int) -> int:
        n = min(self._idx, n)
        self._idx -= n
        self.offset = self.offset - n
        return n

    def make_mask(self, n: int, return_array: bool = False, **kwargs: Any) -> mx.array:
        return create_causal_mask(n, offset=self._idx, left_padding=self.left_padding, **kwargs)

    def filter(self, batch_indices: list[int] | mx.array) -> None:
        """Keep only these sequences, then drop the left padding they all share."""
        if self.keys is not None and self.values is not None:
            self.keys, self.values = tree_map(lambda x: x[batch_indices], (self.keys, self.values))
        self.offset = self.offset[batch_indices]
        self.left_padding = self.left_padding[batch_indices]
        shared = cast(int, self.left_padding.min().item())
        if shared > 0:
            if self.keys is not None and self.values is not None:
                self.keys, self.values = tree_map(lambda x: x[..., shared:, :], (self.keys, self.values))
            self._idx -= shared
            self.left_padding -= shared

    def extend(self, other: BatchQuantizedKV) -> None:
        """Append `other`'s sequences, both right-aligned at the longer one's position."""
        if self.keys is None and other.keys is None:
            self.left_padding = mx.concatenate([self.left_padding, other.left_padding])
            self.offset = mx.concatenate([self.offset, other.offset])
            return
        like = self if self.keys is not None else other
        assert like.keys is not None and like.values is not None
        idx = max(self._idx, other._idx)
        size = max(c.keys[0].shape[2] for c in (self, other) if c.keys is not None)

        def pad(c: BatchQuantizedKV) -> tuple[Triple, Triple, mx.array, mx.array]:
            assert like.keys is not None and like.values is not None
            rows = int(c.offset.shape[0])
            keys = c.keys if c.keys is not None else _zeros_like_along(like.keys, rows, 0)
            values = c.values if c.values is not None else _zeros_like_along(like.values, rows, 0)
            left = idx - c._idx
            right = size - keys[0].shape[2] - left

            def fit(x: mx.array) -> mx.array:
                r = right
                if r < 0:
                    x, r = x[..., :r, :], 0
                if left or r:
                    x = mx.pad(x, [(0, 0), (0, 0), (left, r), (0, 0)])
                return x

            return tree_map(fit, keys), tree_map(fit, values), c.offset, c.left_padding + left

        (k1, v1, o1, p1), (k2, v2, o2, p2) = pad(self), pad(other)
        self.keys = tuple(mx.concatenate([a, b]) for a, b in zip(k1, k2, strict=True))  # type: ignore[assignment]
        self.values = tuple(mx.concatenate([a, b]) for a, b in zip(v1, v2, strict=True))  # type: ignore[assignment]
        self.offset = mx.concatenate([o1, o2])
        self.left_padding = mx.concatenate([p1, p2])
        self._idx = idx

    def extract(self, idx: int) -> QuantizedKV:
        """Sequence `idx` on its own, copied out of the batch buffers (a slice would keep them all alive)."""
        cache = QuantizedKV(group_size=self.group_size, bits=self._bits)
        padding = cast(int, self.left_padding[idx].item())
        if self.keys is not None and self.values is not None:
            keys, values = tree_map(
                lambda x: mx.contiguous(x[idx : idx + 1, :, padding : self._idx]), (self.keys, self.values)
            )
            cache.keys, cache.values = keys, values
            cache.offset = self._idx - padding
        return cache

    @classmethod
    def merge(cls, caches: list[QuantizedKV]) -> BatchQuantizedKV:
        """One batch from single-sequence caches, each right-aligned (left-padded) to the longest."""
        group_size, bits = caches[0].group_size, caches[0].bits
        if any(c.group_size != group_size or c.bits != bits for c in caches):
            raise ValueError("Cannot batch quantized KV caches of different bits or group sizes")
        lengths = [c.size() for c in caches]
        longest = max(lengths)
        if longest == 0:
            return cls([0] * len(caches), group_size, bits)
        padding = [longest - n for n in lengths]
        like = next(c for c in caches if c.keys is not None and c.offset > 0)
        assert like.keys is not None and like.values is not None
        keys = _zeros_like_along(like.keys, len(caches), longest)
        values = _zeros_like_along(like.values, len(caches), longest)
        for i, (p, c) in enumerate(zip(padding, caches, strict=True)):
            if c.keys is None or c.values is None or c.offset == 0:
                continue
            for j in range(3):
                keys[j][i : i + 1, :, p : p + c.offset] = c.keys[j][..., : c.offset, :]
                values[j][i : i + 1, :, p : p + c.offset] = c.values[j][..., : c.offset, :]
        cache = cls(padding, group_size, bits)
        cache.keys, cache.values = keys, values
        cache.offset += longest
        cache._idx = longest
        return cache

    def size(self) -> int:
        return self._idx

    def empty(self) -> bool:
        return self.keys is None

    @property
    def nbytes(self) -> int:
        if self.keys is None or self.values is None:
            return 0
        return sum(int(x.nbytes) for x in (*self.keys, *self.values))
