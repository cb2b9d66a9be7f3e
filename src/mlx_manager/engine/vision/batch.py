"""A vision model's language model decoding in mlx-lm's BatchGenerator, one image prefill per request.

An image prompt is prefilled here, alone: the vision tower's features (engine/vision/features) are merged into
the prompt's embeddings by the model's own `get_input_embeddings`, and the language model runs over them into
a plain KV cache. The sequence then joins the batch with that cache and its last prompt token, like a prefix
cache hit, and decodes next to every other sequence: from then on it is text. Text-only prompts take the
batch's own prefill.

Qwen-style multimodal RoPE places an image on a grid, so after it a sequence's rotary position lags its cache
length by a fixed delta (negative). The delta rides with the sequence's layer-0 cache through the batch's merge,
filter, extend and extract, and the decoder adds it to each row's cache offset.
"""

from __future__ import annotations

from typing import Any, cast

import mlx.core as mx
from mlx_lm.models.cache import BatchKVCache, KVCache

from mlx_manager.engine.vision import features
from mlx_manager.engine.vision.inputs import VisionInputs

# Extras of get_input_embeddings a chunked prefill can slice along the prompt; others mean one whole pass.
_CHUNKABLE = {"position_ids", "rope_deltas"}
# Prefix-cache ids of image positions start here: above any vocabulary, within the cache's 32-bit token ids.
PSEUDO_BASE = 1 << 31


class DeltaKVCache(KVCache):
    """One sequence's layer-0 KV with its RoPE delta (position = tokens in cache + delta)."""

    def __init__(self, delta: int = 0) -> None:
        super().__init__()
        self.delta = delta

    @classmethod
    def merge(cls, caches: list[Any]) -> DeltaBatchKVCache:
        return DeltaBatchKVCache.of(BatchKVCache.merge(caches), [getattr(c, "delta", 0) for c in caches])


class DeltaBatchKVCache(BatchKVCache):
    deltas: mx.array

    @classmethod
    def of(cls, batch: BatchKVCache, deltas: list[int]) -> DeltaBatchKVCache:
        batch.__class__ = cls
        assert isinstance(batch, DeltaBatchKVCache)
        batch.deltas = mx.array(deltas, dtype=mx.int32)
        return batch

    def filter(self, batch_indices: Any) -> None:
        super().filter(batch_indices)
        self.deltas = self.deltas[mx.array(batch_indices)] if len(batch_indices) else mx.array([], dtype=mx.int32)

    def extend(self, other: Any) -> None:
        theirs = getattr(other, "deltas", None)
        if theirs is None:
            theirs = mx.zeros((other.offset.shape[0],), dtype=mx.int32)
        super().extend(other)
        self.deltas = mx.concatenate([self.deltas, theirs])

    def extract(self, idx: int) -> KVCache:
        plain = super().extract(idx)
        delta = cast(int, self.deltas[idx].item())
        if not delta:
            return plain  # a text sequence's cache is stored and reused as any other
        out = DeltaKVCache(delta)
        out.keys, out.values, out.offset = plain.keys, plain.values, plain.offset
        return out


def with_delta(cache: list[Any], delta: int = 0) -> list[Any]:
    """`cache` with its first layer carrying `delta` (a prefix-cache hit's plain layer is converted)."""
    first = cache[0]
    if type(first) is KVCache:
        out = DeltaKVCache(delta)
        out.keys, out.values, out.offset = first.keys, first.values, first.offset
        return [out, *cache[1:]]
    if isinstance(first, DeltaKVCache):
        first.delta = delta
    return cache


class BatchDecoder:
    """What BatchGenerator calls as its model: the language model, with each row's multimodal positions."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.lm = model.language_model
        self.mrope = hasattr(self.lm, "get_rope_index")  # Qwen2/2.5-VL style

    @property
    def layers(self) -> Any:
        return self.lm.layers

    def make_cache(self) -> list[Any]:
        make = getattr(self.lm, "make_cache", None)
        caches = make() if make is not None else [KVCache() for _ in self.lm.layers]
        return with_delta(caches) if self.mrope else caches

    def __call__(self, inputs: mx.array, cache: list[Any] | None = None, **kwargs: Any) -> mx.array:
        if self.mrope and cache is not None:
            batch, length = inputs.shape
            first = cache[0]
            deltas = getattr(first, "deltas", None)
            offset = first.offset if isinstance(first.offset, mx.array) else mx.array([first.offset])
            start = offset + (deltas if deltas is not None else 0)
            positions = start[:, None] + mx.arange(length)[None]
            kwargs["position_ids"] = mx.broadcast_to(positions[None], (3, batch, length))
        return self.lm(inputs, cache=cache, **kwargs).logits


def first_image(ids: list[int], image_token_id: int | None) -> int:
    """Where the first image's tokens start (len(ids) when there is none)."""
    if image_token_id is None:
        return 0  # unknown placement: nothing before it is known to be text
    try:
        return ids.index(image_token_id)
    except ValueError:
        return len(ids)


def image_keys(inputs: VisionInputs) -> list[bytes] | None:
    """A content hash per image, in prompt order, for Qwen's layout (patch rows and a grid row per image); None
    for another layout."""
    grid = inputs.extra.get("image_grid_thw")
    others = {k: v for k, v in inputs.extra.items() if k != "image_grid_thw"}
    if isinstance(grid, mx.array) and grid.ndim == 2 and grid.shape[0] == 1:
        return [features.content_key(inputs.pixel_values, grid, **others)]
    parts = features.grid_split(inputs.pixel_values, grid)
    if parts is None:
        return None
    return [features.content_key(pixels, grid, **others) for pixels, grid in parts]


def cache_key(ids: list[int], image_token_id: int | None, inputs: VisionInputs) -> list[int]:
    """The prompt as the prefix cache sees it: each image token replaced by an id above any vocabulary, drawn
    from its image's hash (pixel values and grid), so the KV of an image is found again for the same image bytes
    under the same processor settings after the same text, and never for another image."""
    keys = image_keys(inputs) or []
    whole = b"" if keys else features.content_key(inputs.pixel_values, **inputs.extra)
    key = list(ids)
    run, n, base = -1, 0, 0  # a run of image tokens is one image
    for i, token in enumerate(ids):
        if token != image_token_id:
            continue
        if i == 0 or ids[i - 1] != image_token_id:
            run, n = run + 1, 0
            # Its own hash, else (another layout) the hash of all the request's images with its index.
            digest = keys[run] if run < len(keys) else features.content_key(whole or keys[-1], run)
            base = int.from_bytes(digest[:4], "little")
        key[i] = PSEUDO_BASE + (base + n) % PSEUDO_BASE
        n += 1
    return key


def prefill(model: Any, inputs: VisionInputs, cache: list[Any], start: int, step: int) -> int:
    """Run prompt tokens [start, len - 1) through the language model into `cache` (which holds [0, start)), the
    images merged in, in chunks of `step` tokens where the model allows. Returns the RoPE delta decoding adds."""
    out = model.get_input_embeddings(inputs.input_ids, inputs.pixel_values, mask=inputs.mask, **inputs.extra)
    embeds = out.inputs_embeds
    extra = {k: v for k, v in out.to_dict().items() if k != "inputs_embeds" and v is not None}
    positions = extra.pop("position_ids", None)
    deltas = extra.get("rope_deltas")
    end = embeds.shape[1] - 1
    stops = [*range(start + step, end, step), end] if set(extra) <= _CHUNKABLE else [end]
    lm = model.language_model
    at = start
    for stop in stops:
        if stop <= at:
            continue
        kwargs = dict(extra)
        if positions is not None:
            kwargs["position_ids"] = positions[..., at:stop]
        # Only the KV is evaluated: the logits of these positions are never computed.
        lm(inputs.input_ids[:, at:stop], inputs_embeds=embeds[:, at:stop], cache=cache, **kwargs)
        mx.eval([c.state for c in cache])
        at = stop
    return cast(int, deltas.reshape(-1)[0].item()) if deltas is not None else 0
