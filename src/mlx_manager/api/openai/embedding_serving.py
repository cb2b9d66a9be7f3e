"""Embeddings requests to engine calls and vectors to OpenAI's response. No MLX here."""

from __future__ import annotations

import base64

import numpy as np

from mlx_manager.api.errors import APIError
from mlx_manager.api.openai.embedding_schemas import (
    MAX_INPUTS,
    EmbeddingData,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
)
from mlx_manager.api.request.start import only_here
from mlx_manager.engine.backend import Backend
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import ModelNotFoundError


def encode_base64(vector: np.ndarray) -> str:
    """OpenAI's base64 format: the vector as little-endian float32 bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


async def create_embeddings(engine: Engine, req: EmbeddingRequest, backend: Backend) -> EmbeddingList:
    """`backend`: the router, to say where a model this server lacks runs instead."""
    inputs = req.inputs()
    if len(inputs) > MAX_INPUTS:
        raise APIError(400, f"At most {MAX_INPUTS} inputs are allowed per request, got {len(inputs)}.", param="input")
    try:
        result = await engine.embed(req.model, inputs, req.dimensions)
    except ModelNotFoundError:
        await only_here(backend, req.model, "embeddings")
        raise
    if req.encoding_format == "base64":
        data = [EmbeddingData(index=i, embedding=encode_base64(v)) for i, v in enumerate(result.vectors)]
    else:
        data = [EmbeddingData(index=i, embedding=v) for i, v in enumerate(result.vectors.tolist())]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return EmbeddingList(data=data, model=req.model, usage=usage)
