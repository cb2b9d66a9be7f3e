"""OpenAI embeddings request and response (POST /v1/embeddings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mlx_manager.api.int64 import Positive
from mlx_manager.api.schema_base import NullsAsAbsent

# OpenAI's own limit on inputs per request.
MAX_INPUTS = 2048


class EmbeddingRequest(NullsAsAbsent):
    model: str = Field(min_length=1)
    # Text, texts, or token ids (one list, or one list per input).
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Positive | None = None
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        """One entry per embedding to return."""
        if isinstance(self.input, str):
            return [self.input]
        flat = [x for x in self.input if isinstance(x, int)]
        if self.input and len(flat) == len(self.input):
            return [flat]
        return self.input  # type: ignore[return-value]


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # Floats, or base64 of the little-endian float32 bytes.
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
