"""Tell embedding and reranking models apart from generative ones, from their files alone (no MLX here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlx_manager.engine.types import ModelTask

Pooling = Literal["mean", "cls", "max", "lasttoken", "mean_sqrt_len"]

# Encoder architectures this package runs itself (mlx-lm has no encoders).
ENCODER_TYPES = frozenset({"bert"})
# sentence-transformers' 1_Pooling/config.json keys, in the order it checks them.
_POOLING_KEYS: tuple[tuple[str, Pooling], ...] = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_lasttoken", "lasttoken"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_mean_tokens", "mean"),
)


@dataclass(frozen=True)
class EmbeddingSpec:
    """How a folder's model turns token states into one vector (or, for a cross-encoder, one score)."""

    task: ModelTask
    pooling: Pooling = "mean"
    normalize: bool = True
    max_length: int | None = None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _modules(folder: Path) -> list[dict[str, Any]]:
    """sentence-transformers' modules.json: the pipeline (Transformer, Pooling, Normalize, ...), or []."""
    try:
        data = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def _pooling(folder: Path, modules: list[dict[str, Any]], default: Pooling) -> Pooling:
    for module in modules:
        if str(module.get("type", "")).endswith(".Pooling"):
            config = _read(folder / str(module.get("path") or "1_Pooling") / "config.json")
            for key, mode in _POOLING_KEYS:
                if config.get(key):
                    return mode
    return default


def _max_length(folder: Path, config: dict[str, Any]) -> int | None:
    """sentence-transformers truncates at max_seq_length, below the position table's size."""
    limits = [
        value
        for value in (
            _read(folder / "sentence_bert_config.json").get("max_seq_length"),
            config.get("max_position_embeddings"),
        )
        if isinstance(value, int) and value > 0
    ]
    return min(limits) if limits else None


def _labels(config: dict[str, Any]) -> int:
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    return int(config.get("num_labels") or 2)


def embedding_spec(folder: Path, config: dict[str, Any]) -> EmbeddingSpec:
    """The folder's task: "embed" (bi-encoder), "score" (cross-encoder with one label) or "generate".

    Raises ValueError for an encoder this server cannot use (e.g. a multi-label classifier).
    """
    model_type = config.get("model_type")
    architectures = [str(a) for a in config.get("architectures") or []]
    modules = _modules(folder)
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    if model_type in ENCODER_TYPES:
        if any(a.endswith("ForSequenceClassification") for a in architectures):
            labels = _labels(config)
            if labels != 1:
                raise ValueError(f"a {labels}-label classifier is not a reranker (it needs exactly one label)")
            return EmbeddingSpec("score", pooling="cls", normalize=False, max_length=_max_length(folder, config))
        # Without sentence-transformers' files, mean pooling plus L2 norm is what most BERT embedders use.
        return EmbeddingSpec(
            "embed",
            pooling=_pooling(folder, modules, "mean"),
            normalize=normalize or not modules,
            max_length=_max_length(folder, config),
        )
    if modules:  # a decoder LLM packaged for sentence-transformers, e.g. Qwen3-Embedding (last-token pooling)
        return EmbeddingSpec(
            "embed",
            pooling=_pooling(folder, modules, "lasttoken"),
            normalize=normalize,
            max_length=_max_length(folder, config),
        )
    return EmbeddingSpec("generate")
