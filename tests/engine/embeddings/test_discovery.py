"""Discovery tells embedders, cross-encoders and chat models apart from their files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlx_manager.engine.discovery import discover_models, read_json
from mlx_manager.engine.embeddings.detect import embedding_spec
from mlx_manager.testing.tiny_encoders import write_tiny_bert


def test_minilm_is_an_embedding_model_truncating_at_its_max_seq_length(minilm_dir: Path) -> None:
    info = discover_models([minilm_dir.parent], None)["all-MiniLM-L6-v2"]
    assert (info.task, info.family, info.model_type, info.context_length) == ("embed", "bert", "bert", 256)
    spec = embedding_spec(minilm_dir, read_json(minilm_dir / "config.json"))
    assert (spec.pooling, spec.normalize, spec.max_length) == ("mean", True, 256)


def test_pooling_mode_and_normalize_come_from_sentence_transformers_files(encoders_dir: Path) -> None:
    def spec(name: str) -> tuple[str, bool]:
        folder = encoders_dir / name
        s = embedding_spec(folder, read_json(folder / "config.json"))
        return s.pooling, s.normalize

    assert spec("tiny-bert-cls_token") == ("cls", True)
    assert spec("tiny-bert-max_tokens") == ("max", False)
    assert spec("tiny-bert-mean_sqrt_len_tokens") == ("mean_sqrt_len", True)
    # A bare BertModel folder: mean pooling and L2 norm, what most BERT embedders use.
    assert spec("tiny-bert") == ("mean", True)
    assert spec("tiny-qwen3-embedding") == ("lasttoken", True)


def test_tasks_of_each_kind_of_folder(encoders_dir: Path, tiny_models_dir: Path) -> None:
    found = discover_models([encoders_dir, tiny_models_dir], None)
    assert found["tiny-bert"].task == "embed"
    assert found["tiny-cross-encoder"].task == "score"
    assert found["tiny-qwen3-embedding"].task == "embed"
    assert found["tiny-qwen3-embedding"].family == "qwen3"  # still an mlx-lm model underneath
    assert found["tiny-qwen3"].task == "generate"


def test_multi_label_classifiers_are_skipped_with_a_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tiny_bert(tmp_path / "models" / "classifier", labels=3)
    with caplog.at_level(logging.WARNING):
        found = discover_models([tmp_path / "models"], None)
    assert found == {}
    assert "3-label classifier is not a reranker" in caplog.text
