"""BERT encoders in MLX, with Hugging Face's parameter names so checkpoints load as they are."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

# Hugging Face's hidden_act names; "gelu" is the exact (erf) form.
_ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "gelu_fast": nn.gelu_fast_approx,
    "relu": nn.relu,
    "silu": nn.silu,
}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    num_labels: int = 0  # 0: no classifier head (a bi-encoder)

    @classmethod
    def from_dict(cls, config: dict[str, Any], num_labels: int = 0) -> BertConfig:
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {config['position_embedding_type']!r} is not supported")
        if config.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported")
        names = cls.__dataclass_fields__.keys() - {"num_labels"}
        return cls(**{k: config[k] for k in names if k in config}, num_labels=num_labels)


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def __call__(self, ids: mx.array, types: mx.array) -> mx.array:
        positions = mx.arange(ids.shape[1])[None]
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings(types)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        b, t, d = x.shape

        def split(y: mx.array) -> mx.array:
            return y.reshape(b, t, self.heads, -1).transpose(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(d // self.heads), mask=mask)
        return out.transpose(0, 2, 1, 3).reshape(b, t, d)


class BertDenseNorm(nn.Module):
    """A projection, then LayerNorm over it plus the residual (BertSelfOutput and BertOutput)."""

    def __init__(self, c: BertConfig, in_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertDenseNorm(c, c.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = _ACTIVATIONS[c.hidden_act]

    def __call__(self, x: mx.array) -> mx.array:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertDenseNorm(c, c.intermediate_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        h = self.attention(x, mask)
        return self.output(self.intermediate(h), h)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = [BertLayer(c) for _ in range(c.num_hidden_layers)]


class BertPooler(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def __call__(self, cls_state: mx.array) -> mx.array:
        return mx.tanh(self.dense(cls_state))


class BertModel(nn.Module):
    """BertModel, or BertForSequenceClassification when the config has labels (pooler + classifier)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.config = c
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        if c.num_labels:
            self.pooler = BertPooler(c)
            self.classifier = nn.Linear(c.hidden_size, c.num_labels)

    def __call__(self, ids: mx.array, mask: mx.array, types: mx.array | None = None) -> mx.array:
        """Last hidden states (B, T, H); `mask` is 1 for real tokens and 0 for padding."""
        x = self.embeddings(ids, mx.zeros_like(ids) if types is None else types)
        # Padding keys are hidden from every query; padded queries are dropped by pooling.
        attend = (mask[:, None, None, :] > 0).astype(mx.bool_)
        for layer in self.encoder.layer:
            x = layer(x, attend)
        return x

    def classify(self, ids: mx.array, mask: mx.array, types: mx.array) -> mx.array:
        """Classifier logits (B, num_labels) from the [CLS] state, as BertForSequenceClassification does."""
        return self.classifier(self.pooler(self(ids, mask, types)[:, 0]))

    @staticmethod
    def sanitize(weights: dict[str, mx.array], num_labels: int) -> dict[str, mx.array]:
        """Hugging Face names to ours: drop the "bert." prefix and buffers; keep the pooler only for a head."""
        out: dict[str, mx.array] = {}
        for name, value in weights.items():
            name = name.removeprefix("bert.")
            if name.endswith("position_ids") or name.startswith(("cls.", "lm_head.")):
                continue
            if name.startswith("pooler.") and not num_labels:
                continue
            # Old TensorFlow-converted checkpoints name LayerNorm parameters gamma/beta.
            name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            out[name] = value
        return out
