"""/v1/embeddings through the official openai SDK against a real server with the real MiniLM weights."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from mlx_manager.testing.server import ServerProcess

MODEL = "all-MiniLM-L6-v2"
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(REFERENCE.read_text(encoding="utf-8"))["items"]
    return items


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def test_float_vectors_match_the_pytorch_reference_with_real_usage(
    embedding_client: openai.OpenAI, reference: list[dict[str, Any]]
) -> None:
    reply = embedding_client.embeddings.create(
        model=MODEL, input=[item["input"] for item in reference], encoding_format="float"
    )
    assert reply.model == MODEL and [d.index for d in reply.data] == list(range(len(reference)))
    vectors = np.array([d.embedding for d in reply.data])
    assert _cosines(vectors, np.array([item["embedding"] for item in reference])).min() >= 0.999
    tokens = sum(item["tokens"] for item in reference)  # the long input counts 256, as truncated
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == tokens


def test_base64_is_little_endian_float32_of_the_same_vectors(embedding_client: openai.OpenAI) -> None:
    texts = ["base64 please", "and another one"]
    floats = embedding_client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    encoded = embedding_client.embeddings.create(model=MODEL, input=texts, encoding_format="base64")
    for f, b in zip(floats.data, encoded.data, strict=True):
        assert isinstance(b.embedding, str)
        decoded = np.frombuffer(base64.b64decode(b.embedding), dtype="<f4")
        # Each request computes its vectors anew (float32 sums may be ordered differently); a wrong byte order or
        # width would be off by far more than this.
        np.testing.assert_allclose(decoded, np.array(f.embedding, dtype=np.float32), atol=2e-6)
    # Without encoding_format the SDK asks for base64 itself and decodes it.
    default = embedding_client.embeddings.create(model=MODEL, input=texts)
    np.testing.assert_allclose(default.data[1].embedding, np.array(floats.data[1].embedding, np.float32), atol=2e-6)


def test_dimensions_truncate_and_renormalize(embedding_client: openai.OpenAI, reference: list[dict[str, Any]]) -> None:
    reply = embedding_client.embeddings.create(model=MODEL, input=reference[0]["input"], dimensions=128)
    vector = np.array(reply.data[0].embedding)
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert _cosines(vector[None], np.array(reference[0]["embedding"][:128])[None])[0] >= 0.999


def test_dimensions_larger_than_the_model_is_a_400_naming_it(embedding_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        embedding_client.embeddings.create(model=MODEL, input="too wide", dimensions=1024)
    assert info.value.body["param"] == "dimensions"  # type: ignore[index]
    assert "between 1 and 384" in info.value.message


def test_token_id_inputs_embed_like_their_text(embedding_client: openai.OpenAI) -> None:
    ids = [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    by_text = embedding_client.embeddings.create(model=MODEL, input="Hello world", encoding_format="float")
    one = embedding_client.embeddings.create(model=MODEL, input=ids, encoding_format="float")
    many = embedding_client.embeddings.create(model=MODEL, input=[ids, ids[:3]], encoding_format="float")
    assert len(one.data) == 1 and len(many.data) == 2 and one.usage.prompt_tokens == 4
    np.testing.assert_allclose(one.data[0].embedding, by_text.data[0].embedding, atol=1e-6)
    np.testing.assert_allclose(many.data[0].embedding, by_text.data[0].embedding, atol=1e-6)


def test_a_decoder_llm_embedder_serves_batches(embedding_client: openai.OpenAI) -> None:
    texts = ["short", "a longer input for the tiny qwen3 embedder", "mid length text"]
    batch = embedding_client.embeddings.create(model="tiny-qwen3-embedding", input=texts, encoding_format="float")
    single = embedding_client.embeddings.create(model="tiny-qwen3-embedding", input=texts[1], encoding_format="float")
    np.testing.assert_allclose(batch.data[1].embedding, single.data[0].embedding, atol=1e-5)
    assert all(abs(np.linalg.norm(d.embedding) - 1) < 1e-5 for d in batch.data)


def test_models_lists_embedding_models_beside_chat_models(embedding_client: openai.OpenAI) -> None:
    ids = {m.id for m in embedding_client.models.list()}
    assert {MODEL, "tiny-cross-encoder", "tiny-qwen3-embedding", "tiny-llama"} <= ids


def test_chat_model_asked_for_embeddings_is_a_clear_400(embedding_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        embedding_client.embeddings.create(model="tiny-llama", input="hi")
    assert "'tiny-llama' is a text-generation model" in info.value.message
    assert info.value.body["param"] == "model"  # type: ignore[index]


def test_embedding_model_asked_for_chat_is_a_clear_400(embedding_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        embedding_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert f"'{MODEL}' is an embedding model; it cannot generate text" in info.value.message


def test_request_errors_have_openais_shape(embedding_server: ServerProcess) -> None:
    url = f"{embedding_server.base_url}/v1/embeddings"
    cases = [
        ({"model": "no-such-model", "input": "x"}, 404, "model"),
        ({"model": MODEL, "input": []}, 400, "input"),
        ({"model": MODEL, "input": ""}, 400, "input"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": MODEL, "input": "x", "dimensions": 0}, 400, "dimensions"),
        ({"model": MODEL, "input": "x", "normalize": False}, 400, "normalize"),
        ({"model": MODEL, "input": ["x"] * 2049}, 400, "input"),
    ]
    for body, status, param in cases:
        reply = httpx.post(url, json=body, timeout=60)
        assert reply.status_code == status, (body, reply.text)
        error = reply.json()["error"]
        assert error["param"] == param and error["message"], (body, error)
