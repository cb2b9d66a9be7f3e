"""Embedding and rerank requests against a loaded model: validate, tokenize, run on the model's thread."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlx_manager.engine.embeddings.model import EmbeddingModel, Encoded
from mlx_manager.engine.embeddings.pooling import truncate_dimensions
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.pool import ModelRunner

# Texts, or pre-tokenized inputs (used as given: include the model's special tokens).
EmbedInputs = Sequence[str] | Sequence[Sequence[int]]


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, d) float32, in input order
    prompt_tokens: int  # after truncation, special tokens included


@dataclass(frozen=True)
class Ranking:
    scores: list[float]  # one per document, in document order; higher is more relevant
    total_tokens: int


def _token_inputs(model: EmbeddingModel, inputs: Sequence[Sequence[int]]) -> list[Encoded]:
    encoded: list[Encoded] = []
    for i, ids in enumerate(inputs):
        if not ids:
            raise InvalidRequestError(f"input[{i}] is an empty list of tokens.", param="input")
        bad = [t for t in ids if not 0 <= t < model.vocab_size]
        if bad:
            raise InvalidRequestError(f"input[{i}] has token ids out of range: {bad[:5]}", param="input")
        encoded.append(Encoded(list(ids[: model.max_length] if model.max_length else ids)))
    return encoded


def _text_inputs(model: EmbeddingModel, inputs: Sequence[str]) -> list[Encoded]:
    for i, text in enumerate(inputs):
        if not text:
            raise InvalidRequestError(f"input[{i}] is an empty string.", param="input")
    return model.tokenize(inputs)


async def embed(
    runner: ModelRunner, model: EmbeddingModel, inputs: EmbedInputs, dimensions: int | None = None
) -> Embeddings:
    """Vectors for every input in one batched pass; `dimensions` truncates and renormalizes (Matryoshka)."""
    if not inputs:
        raise InvalidRequestError("input must not be empty.", param="input")
    if dimensions is not None and not 1 <= dimensions <= model.dimensions:
        raise InvalidRequestError(
            f"dimensions must be between 1 and {model.dimensions} for '{model.info.id}', got {dimensions}.",
            param="dimensions",
        )
    if all(isinstance(x, str) for x in inputs):
        encoded = await asyncio.to_thread(_text_inputs, model, [str(x) for x in inputs])
    else:
        encoded = _token_inputs(model, [x for x in inputs if not isinstance(x, str)])
    vectors = await runner.run(model.embed, encoded)
    if dimensions is not None and dimensions < model.dimensions:
        vectors = truncate_dimensions(vectors, dimensions)
    return Embeddings(vectors, sum(len(e.ids) for e in encoded))


async def rerank(runner: ModelRunner, model: EmbeddingModel, query: str, documents: Sequence[str]) -> Ranking:
    """Cross-encoders score each (query, document) pair; bi-encoders give the cosine of the two vectors."""
    if not query:
        raise InvalidRequestError("query must not be empty.", param="query")
    if not documents:
        raise InvalidRequestError("documents must not be empty.", param="documents")
    for i, doc in enumerate(documents):
        if not doc:
            raise InvalidRequestError(f"documents[{i}] is an empty string.", param="documents")
    if model.spec.task == "score":
        pairs = await asyncio.to_thread(model.tokenize_pairs, query, documents)
        scores = await runner.run(model.score, pairs)
        return Ranking([float(s) for s in scores], sum(len(p.ids) for p in pairs))
    encoded = await asyncio.to_thread(model.tokenize, [query, *documents])
    vectors = await runner.run(model.embed, encoded)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return Ranking([float(s) for s in unit[1:] @ unit[0]], sum(len(e.ids) for e in encoded))
