"""The real all-MiniLM-L6-v2 on MLX agrees with PyTorch (sentence-transformers' recipe) to 1e-3 cosine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlx_manager.engine.embeddings.model import BATCH_SEQUENCES, EmbeddingModel, Encoded
from mlx_manager.engine.embeddings.pooling import truncate_dimensions

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "minilm_reference.json"
# Equal inputs in different batches or rows may be summed in another order by OpenBLAS: float32 noise, not bugs.
SAME_INPUT_ATOL = 2e-6


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(REFERENCE.read_text(encoding="utf-8"))["items"]
    return items


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def test_vectors_match_the_pytorch_reference(minilm: EmbeddingModel, reference: list[dict[str, Any]]) -> None:
    vectors = minilm.embed(minilm.tokenize([item["input"] for item in reference]))
    expected = np.array([item["embedding"] for item in reference])
    assert vectors.shape == (len(reference), 384) and vectors.dtype == np.float32
    assert cosines(vectors, expected).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_inputs_are_truncated_at_256_tokens_like_sentence_transformers(
    minilm: EmbeddingModel, reference: list[dict[str, Any]]
) -> None:
    encoded = minilm.tokenize([item["input"] for item in reference])
    assert [len(e.ids) for e in encoded] == [item["tokens"] for item in reference]
    long = reference[-1]["input"]
    assert reference[-1]["untruncated_tokens"] > 256 and len(encoded[-1].ids) == 256
    assert encoded[-1].ids[0] == 101 and encoded[-1].ids[-1] == 102  # [CLS] ... [SEP] survive the cut
    # Words past the limit cannot change the vector.
    cut = minilm.tokenize([long, long + " completely different words about volcanoes"])
    assert cut[0].ids == cut[1].ids
    a, b = minilm.embed(cut)
    np.testing.assert_allclose(a, b, atol=SAME_INPUT_ATOL)


def test_a_padded_batch_gives_the_vectors_of_one_by_one_calls(
    minilm: EmbeddingModel, reference: list[dict[str, Any]]
) -> None:
    encoded = minilm.tokenize([item["input"] for item in reference])
    batched = minilm.embed(encoded)
    single = np.concatenate([minilm.embed([e]) for e in encoded])
    np.testing.assert_allclose(batched, single, atol=SAME_INPUT_ATOL)


def test_more_inputs_than_one_batch_keep_their_order(minilm: EmbeddingModel) -> None:
    texts = [f"sentence number {i} about {'cats' if i % 2 else 'ships'}" for i in range(BATCH_SEQUENCES + 5)]
    encoded = minilm.tokenize(texts)
    vectors = minilm.embed(encoded)
    for i in (0, 17, BATCH_SEQUENCES + 4):
        np.testing.assert_allclose(vectors[i], minilm.embed([encoded[i]])[0], atol=SAME_INPUT_ATOL)


def test_token_ids_give_the_same_vector_as_the_text(minilm: EmbeddingModel) -> None:
    text = "Token ids in, same vector out."
    (encoded,) = minilm.tokenize([text])
    from_ids, from_text = minilm.embed([Encoded(list(encoded.ids))]), minilm.embed([encoded])
    np.testing.assert_allclose(from_ids, from_text, atol=SAME_INPUT_ATOL)


def test_dimensions_truncate_then_renormalize(minilm: EmbeddingModel, reference: list[dict[str, Any]]) -> None:
    full = minilm.embed(minilm.tokenize([reference[0]["input"]]))
    cut = truncate_dimensions(full, 64)
    assert cut.shape == (1, 64)
    np.testing.assert_allclose(np.linalg.norm(cut), 1.0, atol=1e-6)
    expected = np.array(reference[0]["embedding"][:64])
    assert cosines(cut, expected[None])[0] >= 0.999
