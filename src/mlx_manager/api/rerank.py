"""POST /v1/rerank (and /rerank), as Cohere, Jina and vLLM shape it. No MLX here."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from mlx_manager.api.access import record
from mlx_manager.api.deps import BackendDep, EngineDep
from mlx_manager.api.int64 import Count
from mlx_manager.api.request.start import only_here
from mlx_manager.api.schema_base import Strict
from mlx_manager.api.unicode_check import UnicodeCheckedRoute
from mlx_manager.engine.errors import ModelNotFoundError

router = APIRouter(tags=["rerank"], route_class=UnicodeCheckedRoute)
MAX_DOCUMENTS = 1000


class RerankDocument(Strict):
    text: str


class RerankRequest(Strict):
    model: str = Field(min_length=1)
    query: str
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    # None or 0 (vLLM's default) returns every document.
    top_n: Count | None = None
    return_documents: bool = True

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


@router.post("/v1/rerank", response_model_exclude_none=True)
@router.post("/rerank", response_model_exclude_none=True, include_in_schema=False)
async def rerank(body: RerankRequest, engine: EngineDep, backend: BackendDep, request: Request) -> RerankResponse:
    """Documents sorted by relevance to the query, most relevant first; `index` is the position in the request."""
    record(request, body.model)
    texts = body.texts()
    try:
        ranking = await engine.rerank(body.model, body.query, texts)
    except ModelNotFoundError:
        await only_here(backend, body.model, "rerank requests")
        raise
    order = sorted(range(len(texts)), key=lambda i: ranking.scores[i], reverse=True)
    results = [
        RerankResult(
            index=i,
            relevance_score=ranking.scores[i],
            document=RerankDocument(text=texts[i]) if body.return_documents else None,
        )
        for i in order[: body.top_n or None]
    ]
    return RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=body.model,
        results=results,
        usage=RerankUsage(total_tokens=ranking.total_tokens),
    )
