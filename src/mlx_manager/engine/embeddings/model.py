"""Embedding and reranking models: BERT encoders run here, decoder LLM embedders through mlx-lm's backbone.

Everything that makes MLX arrays (`load_embedding_model`, `embed`, `score`) runs on the model's own thread,
because MLX streams are thread-local; `tokenize*` are plain tokenizers calls, safe on any thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from tokenizers import Tokenizer

from mlx_manager.engine.discovery import read_json
from mlx_manager.engine.embeddings.bert import BertConfig, BertModel
from mlx_manager.engine.embeddings.detect import ENCODER_TYPES, EmbeddingSpec, embedding_spec
from mlx_manager.engine.embeddings.pooling import l2_normalize, pool
from mlx_manager.engine.load_meter import loading
from mlx_manager.engine.types import ModelInfo

log = logging.getLogger(__name__)

# One forward pass holds at most this many (padded) tokens, or this many sequences.
BATCH_TOKENS = 8192
BATCH_SEQUENCES = 64

# (ids, mask, token types) -> (B, T, H) hidden states.
Forward = Callable[[mx.array, mx.array, mx.array], mx.array]


@dataclass
class Encoded:
    """One tokenized input: ids and, for a (query, document) pair, BERT's segment ids."""

    ids: list[int]
    types: list[int] | None = None


@dataclass
class EmbeddingModel:
    info: ModelInfo
    spec: EmbeddingSpec
    tokenizer: Tokenizer
    forward: Forward
    classifier: Callable[[mx.array, mx.array, mx.array], mx.array] | None
    memory_bytes: int
    max_length: int | None
    vocab_size: int
    pad_id: int
    dimensions: int

    def tokenize(self, texts: Sequence[str]) -> list[Encoded]:
        return [Encoded(e.ids) for e in self.tokenizer.encode_batch(list(texts))]

    def tokenize_pairs(self, query: str, documents: Sequence[str]) -> list[Encoded]:
        """[CLS] query [SEP] document [SEP], truncated longest-first to the model's length."""
        encodings = self.tokenizer.encode_batch([(query, doc) for doc in documents])
        return [Encoded(e.ids, e.type_ids) for e in encodings]

    def embed(self, inputs: Sequence[Encoded]) -> np.ndarray:
        """(len(inputs), dimensions) float32 vectors, in input order; batched by length to limit padding."""
        return self._batched(inputs, self._embed_batch, self.dimensions)

    def score(self, pairs: Sequence[Encoded]) -> np.ndarray:
        """Cross-encoder relevance in (0, 1): sigmoid of the one-label head, as sentence-transformers does."""
        return self._batched(pairs, self._score_batch, 1)[:, 0]

    def _embed_batch(self, ids: mx.array, mask: mx.array, types: mx.array) -> mx.array:
        vectors = pool(self.forward(ids, mask, types), mask, self.spec.pooling)
        return l2_normalize(vectors) if self.spec.normalize else vectors

    def _score_batch(self, ids: mx.array, mask: mx.array, types: mx.array) -> mx.array:
        assert self.classifier is not None
        return mx.sigmoid(self.classifier(ids, mask, types).astype(mx.float32))

    def _batched(self, inputs: Sequence[Encoded], run: Forward, width: int) -> np.ndarray:
        out = np.zeros((len(inputs), width), dtype=np.float32)
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i].ids), reverse=True)
        start = 0
        while start < len(order):
            longest = len(inputs[order[start]].ids)
            size = max(1, min(BATCH_SEQUENCES, BATCH_TOKENS // max(longest, 1)))
            chunk = order[start : start + size]
            ids, mask, types = self._pad([inputs[i] for i in chunk], longest)
            out[chunk] = np.array(run(ids, mask, types))  # evaluated here, on the model's thread
            start += size
        return out

    def _pad(self, batch: list[Encoded], length: int) -> tuple[mx.array, mx.array, mx.array]:
        """Right padding: causal decoders then need no extra mask, and encoders mask the padded keys."""
        ids = np.full((len(batch), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(batch), length), dtype=np.int32)
        types = np.zeros((len(batch), length), dtype=np.int32)
        for row, enc in enumerate(batch):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
            if enc.types is not None:
                types[row, : len(enc.types)] = enc.types
        return mx.array(ids), mx.array(mask), mx.array(types)


def _load_encoder(folder: Path, config: dict[str, object], labels: int) -> BertModel:
    weights: dict[str, mx.array] = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(mx.load(str(path)))  # type: ignore[arg-type]
    model = BertModel(BertConfig.from_dict(dict(config), num_labels=labels))
    quant = config.get("quantization")
    if isinstance(quant, dict):  # quantized like mlx-lm checkpoints: only layers that were saved with scales
        nn.quantize(
            model,
            group_size=int(quant.get("group_size", 64)),
            bits=int(quant.get("bits", 4)),
            class_predicate=lambda p, _m: f"{p}.scales" in weights or f"bert.{p}.scales" in weights,
        )
    model.load_weights(list(BertModel.sanitize(weights, labels).items()), strict=True)
    return model


def _load_decoder(folder: Path) -> nn.Module:
    """An mlx-lm model's backbone: token ids -> final (normed) hidden states, causal attention."""
    from mlx_lm.utils import load_model

    model, _ = load_model(folder)
    backbone = getattr(model, "model", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(model).__name__} has no .model backbone to take hidden states from")
    return backbone


def load_embedding_model(info: ModelInfo) -> EmbeddingModel:
    """Runs on the model's own thread, like `load_model`."""
    folder = Path(info.path)
    with loading(info, "embedding model") as meter:
        config = read_json(folder / "config.json")
        spec = embedding_spec(folder, config)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        classifier = None
        if config.get("model_type") in ENCODER_TYPES:
            bert = _load_encoder(folder, config, 1 if spec.task == "score" else 0)
            forward: Forward = bert
            classifier = bert.classify if spec.task == "score" else None
            mx.eval(bert.parameters())
            hidden = bert.config.hidden_size
        else:
            backbone = _load_decoder(folder)
            mx.eval(backbone.parameters())
            forward = lambda ids, _mask, _types: backbone(ids)  # noqa: E731 - right padding needs no mask
            hidden = int(config.get("hidden_size") or backbone(mx.array([[0]])).shape[-1])
    # The checkpoint's tokenizer.json may pad or truncate to fixed sizes; we pad ourselves and cut at max_length.
    tokenizer.no_padding()
    if spec.max_length:
        tokenizer.enable_truncation(spec.max_length)
    else:
        tokenizer.no_truncation()
    memory = meter.memory()
    log.info(
        "Loaded %s (%s, %s pooling, %.1f MB) in %.2fs",
        info.id,
        "cross-encoder" if spec.task == "score" else "embeddings",
        spec.pooling,
        memory / 1e6,
        meter.seconds(),
    )
    return EmbeddingModel(
        info=info,
        spec=spec,
        tokenizer=tokenizer,
        forward=forward,
        classifier=classifier,
        memory_bytes=memory or info.size_bytes,
        max_length=spec.max_length,
        vocab_size=int(config.get("vocab_size") or tokenizer.get_vocab_size()),
        pad_id=int(config.get("pad_token_id") or 0),
        dimensions=hidden,
    )
