"""Tiny encoder folders (random weights) and the real MiniLM, loaded on the test's own thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.embeddings.model import EmbeddingModel, load_embedding_model
from mlx_manager.testing.tiny_encoders import write_decoder_embedder, write_tiny_bert


def load(folder: Path) -> EmbeddingModel:
    """Discover and load one folder (MLX arrays are then used on this thread only)."""
    return load_embedding_model(discover_models([folder], None)[folder.name])


@pytest.fixture(scope="session")
def encoders_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("encoders")
    write_tiny_bert(out / "tiny-bert", seed=1)
    for mode in ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens"):
        write_tiny_bert(out / f"tiny-bert-{mode}", pooling=mode, normalize=mode != "max_tokens", seed=1)
    write_tiny_bert(out / "tiny-bert-short", pooling="mean_tokens", max_seq_length=8, seed=1)
    write_tiny_bert(out / "tiny-cross-encoder", labels=1, seed=2)
    write_decoder_embedder(tiny_models["tiny-qwen3"], out / "tiny-qwen3-embedding")
    return out


@pytest.fixture(scope="session")
def minilm(minilm_dir: Path) -> EmbeddingModel:
    return load(minilm_dir)
