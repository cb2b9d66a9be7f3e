"""A decoder LLM packaged as a sentence-transformers embedder (Qwen3-Embedding style) pools its last token."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_lm.utils import load_model

from tests.engine.embeddings.conftest import load

TEXTS = ["hello world", "a much longer input that pads the other ones in the batch", "x"]


def test_vector_is_the_normalized_final_hidden_state_of_the_last_token(encoders_dir: Path) -> None:
    folder = encoders_dir / "tiny-qwen3-embedding"
    model = load(folder)
    encoded = model.tokenize(TEXTS)
    vectors = model.embed(encoded)
    lm, _ = load_model(folder)
    for vector, enc in zip(vectors, encoded, strict=True):
        last = np.array(lm.model(mx.array([enc.ids]))[0, -1].astype(mx.float32))
        np.testing.assert_allclose(vector, last / np.linalg.norm(last), atol=1e-5)
    assert vectors.shape == (3, model.dimensions)


def test_right_padding_leaves_causal_vectors_unchanged(encoders_dir: Path) -> None:
    model = load(encoders_dir / "tiny-qwen3-embedding")
    encoded = model.tokenize(TEXTS)
    single = np.concatenate([model.embed([e]) for e in encoded])
    np.testing.assert_allclose(model.embed(encoded), single, atol=1e-5)
