"""A plain numpy BERT, written from the Hugging Face definition, to check the MLX encoder against."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


class NumpyBert:
    def __init__(self, folder: Path) -> None:
        self.config = json.loads((folder / "config.json").read_text())
        raw = mx.load(str(folder / "model.safetensors"))
        assert isinstance(raw, dict)
        self.w = {k.removeprefix("bert."): np.array(v).astype(np.float64) for k, v in raw.items()}

    def _norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        eps = self.config.get("layer_norm_eps", 1e-12)
        return (x - mean) / np.sqrt(var + eps) * self.w[f"{prefix}.weight"] + self.w[f"{prefix}.bias"]

    def _dense(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[f"{prefix}.weight"].T + self.w[f"{prefix}.bias"]

    def hidden(self, ids: list[int], types: list[int] | None = None) -> np.ndarray:
        """(T, H) last hidden states of one unpadded sequence."""
        w, heads = self.w, self.config["num_attention_heads"]
        t = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][types or [0] * t]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}"

            def split(y: np.ndarray) -> np.ndarray:
                return y.reshape(t, heads, -1).transpose(1, 0, 2)

            q, k, v = (split(self._dense(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            attn = (probs @ v).transpose(1, 0, 2).reshape(t, -1)
            h = self._norm(self._dense(attn, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            inter = self._dense(h, f"{p}.intermediate.dense")
            inter = 0.5 * inter * (1 + _erf(inter / math.sqrt(2)))  # exact GELU, as hidden_act "gelu"
            x = self._norm(self._dense(inter, f"{p}.output.dense") + h, f"{p}.output.LayerNorm")
        return x

    def logits(self, ids: list[int], types: list[int]) -> np.ndarray:
        cls_state = self.hidden(ids, types)[0]
        pooled = np.tanh(self._dense(cls_state, "pooler.dense"))
        return self._dense(pooled, "classifier")
