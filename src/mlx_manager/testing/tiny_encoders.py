"""Tiny random-weight encoder folders for tests, laid out like Hugging Face checkpoints, fully offline.

``write_tiny_bert`` writes a BertModel embedder (optionally with sentence-transformers' modules.json and
1_Pooling/config.json) or, with ``labels``, a BertForSequenceClassification cross-encoder, whose weights carry
the "bert." prefix as real ones do. ``write_decoder_embedder`` turns a tiny mlx-lm model folder into a
sentence-transformers decoder embedder (Qwen3-Embedding style: last-token pooling, then Normalize).
No real cross-encoder weights are available offline, so the reranker path is tested with these.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WORD_TEXT = (
    "the a an of to in is on and or for with what where how why who which capital city country france "
    "paris berlin germany london england river mountain weather rain sun cat dog bird fish apple banana "
    "bread coffee tea water computer model vector search query document answer question text language "
    "fast slow big small old new good bad red blue green learning machine deep network"
)
WORDS = tuple(_WORD_TEXT.split())
HIDDEN, LAYERS, HEADS, INTERMEDIATE, MAX_POSITIONS = 64, 2, 4, 128, 64


def _vocab() -> dict[str, int]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,?!'-")
    tokens = [*SPECIAL, *WORDS, *letters, *(f"##{c}" for c in letters)]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def _tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def _weights(rng: np.random.Generator, vocab_size: int, labels: int) -> dict[str, np.ndarray]:
    def mat(*shape: int, std: float = 0.15) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": 1 + mat(HIDDEN, std=0.1), f"{prefix}.bias": mat(HIDDEN, std=0.1)}

    def dense(prefix: str, out: int, inp: int) -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": mat(out, inp), f"{prefix}.bias": mat(out, std=0.05)}

    w: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": mat(vocab_size, HIDDEN, std=0.5),
        "embeddings.position_embeddings.weight": mat(MAX_POSITIONS, HIDDEN, std=0.2),
        "embeddings.token_type_embeddings.weight": mat(2, HIDDEN, std=0.2),
        "embeddings.position_ids": np.arange(MAX_POSITIONS, dtype=np.int64)[None],  # a buffer real files carry
        **norm("embeddings.LayerNorm"),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            w.update(dense(f"{p}.attention.self.{name}", HIDDEN, HIDDEN))
        w.update(dense(f"{p}.attention.output.dense", HIDDEN, HIDDEN))
        w.update(norm(f"{p}.attention.output.LayerNorm"))
        w.update(dense(f"{p}.intermediate.dense", INTERMEDIATE, HIDDEN))
        w.update(dense(f"{p}.output.dense", HIDDEN, INTERMEDIATE))
        w.update(norm(f"{p}.output.LayerNorm"))
    w.update(dense("pooler.dense", HIDDEN, HIDDEN))
    if not labels:
        return w
    head = {f"bert.{k}": v for k, v in w.items()}
    head.update({"classifier.weight": mat(labels, HIDDEN, std=1.0), "classifier.bias": mat(labels, std=0.1)})
    return head


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _sentence_transformers(folder: Path, pooling: str, normalize: bool, max_seq_length: int | None) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "1_Pooling" / "config.json", {f"pooling_mode_{pooling}": True})
    if max_seq_length is not None:
        _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length})


def write_tiny_bert(
    folder: Path,
    *,
    labels: int = 0,
    pooling: str | None = None,
    normalize: bool = True,
    max_seq_length: int | None = None,
    seed: int = 0,
) -> Path:
    """A tiny BERT: an embedder (sentence-transformers files when `pooling` is given, e.g. "mean_tokens",
    "cls_token", "max_tokens") or, with `labels`, a sequence classifier (1 label: a cross-encoder)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    tokenizer = _tokenizer(vocab)
    tokenizer.save(str(folder / "tokenizer.json"))
    config: dict[str, Any] = {
        "architectures": ["BertForSequenceClassification" if labels else "BertModel"],
        "model_type": "bert",
        "vocab_size": len(vocab),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    if labels:
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(labels)}
    _write_json(folder / "config.json", config)
    _write_json(folder / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    weights = _weights(np.random.default_rng(seed), len(vocab), labels)
    mx.save_safetensors(str(folder / "model.safetensors"), {k: mx.array(v) for k, v in weights.items()})
    if pooling is not None:
        _sentence_transformers(folder, pooling, normalize, max_seq_length)
    return folder


def write_decoder_embedder(source: Path, folder: Path, *, pooling: str = "lasttoken") -> Path:
    """Copy an mlx-lm model folder and package it as a sentence-transformers embedder."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".*"))
    _sentence_transformers(folder, pooling, normalize=True, max_seq_length=None)
    return folder
