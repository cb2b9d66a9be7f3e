"""/v1/rerank: bi-encoders rank by cosine, cross-encoders by their classifier; sorted, best first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from mlx_manager.testing.server import ServerProcess
from tests.engine.embeddings.numpy_bert import NumpyBert

QUERY = "What is the capital of France?"
DOCUMENTS = ["Bananas are yellow and sweet.", "Paris is the capital of France.", "France's capital city is Paris."]


def _rerank(server: ServerProcess, path: str = "/v1/rerank", **body: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=60)


def test_bi_encoder_ranks_by_cosine_best_first(
    embedding_server: ServerProcess, embedding_client: openai.OpenAI
) -> None:
    reply = _rerank(embedding_server, model="all-MiniLM-L6-v2", query=QUERY, documents=DOCUMENTS)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["id"].startswith("rerank-") and data["model"] == "all-MiniLM-L6-v2"
    results = data["results"]
    assert [r["index"] for r in results][-1] == 0  # the banana sentence ranks last
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert [r["document"]["text"] for r in results] == [DOCUMENTS[r["index"]] for r in results]
    vectors = embedding_client.embeddings.create(
        model="all-MiniLM-L6-v2", input=[QUERY, *DOCUMENTS], encoding_format="float"
    ).data
    q = np.array(vectors[0].embedding)
    for r in results:
        assert abs(r["relevance_score"] - float(np.array(vectors[r["index"] + 1].embedding) @ q)) < 1e-5
    assert data["usage"]["total_tokens"] > 0


def test_top_n_return_documents_and_object_documents(embedding_server: ServerProcess) -> None:
    docs = [{"text": d} for d in DOCUMENTS]
    reply = _rerank(
        embedding_server, "/rerank", model="all-MiniLM-L6-v2", query=QUERY, documents=docs, top_n=2,
        return_documents=False,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2 and all(set(r) == {"index", "relevance_score"} for r in results)
    assert {r["index"] for r in results} == {1, 2}


def test_cross_encoder_scores_pairs_with_its_classifier(
    embedding_server: ServerProcess, tiny_rerankers_dir: Path
) -> None:
    folder = tiny_rerankers_dir / "tiny-cross-encoder"
    reply = _rerank(embedding_server, model="tiny-cross-encoder", query=QUERY, documents=DOCUMENTS)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    tokenizer, bert = Tokenizer.from_file(str(folder / "tokenizer.json")), NumpyBert(folder)
    expected = []
    for doc in DOCUMENTS:
        pair = tokenizer.encode(QUERY, doc)
        expected.append(1 / (1 + np.exp(-bert.logits(pair.ids, pair.type_ids)[0])))
    assert [r["index"] for r in results] == list(np.argsort(expected)[::-1])
    np.testing.assert_allclose([r["relevance_score"] for r in results], sorted(expected, reverse=True), atol=1e-5)
    total = sum(len(tokenizer.encode(QUERY, d).ids) for d in DOCUMENTS)
    assert reply.json()["usage"]["total_tokens"] == total


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "tiny-llama", "query": "q", "documents": ["d"]}, 400, "model"),
        ({"model": "no-such-model", "query": "q", "documents": ["d"]}, 404, "model"),
        ({"model": "all-MiniLM-L6-v2", "query": "q", "documents": []}, 400, "documents"),
        ({"model": "all-MiniLM-L6-v2", "query": "q", "documents": ["ok", ""]}, 400, "documents"),
        ({"model": "all-MiniLM-L6-v2", "documents": ["d"]}, 400, "query"),
        ({"model": "all-MiniLM-L6-v2", "query": "q", "documents": ["d"], "top_n": -1}, 400, "top_n"),
    ],
)
def test_rerank_errors_name_the_field(
    embedding_server: ServerProcess, body: dict[str, Any], status: int, param: str
) -> None:
    reply = _rerank(embedding_server, **body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param
