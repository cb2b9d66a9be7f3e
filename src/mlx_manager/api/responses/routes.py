"""Thin Responses routes: create (JSON or SSE), retrieve and delete stored responses."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from mlx_manager.api.request.answer import answer
from mlx_manager.api.responses.output import DeletedResponse, ResponseObject
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.api.responses.serving import Caller, ResponsesServing
from mlx_manager.api.unicode_check import UnicodeCheckedRoute

router = APIRouter(prefix="/v1", tags=["responses"], route_class=UnicodeCheckedRoute)


def _serving(request: Request) -> ResponsesServing:
    serving: ResponsesServing = request.app.state.responses_serving
    return serving


def _caller(request: Request) -> Caller:
    """Whose stored responses this request may use: the credential's owner, or anonymous (open mode)."""
    principal = getattr(request.state, "principal", None)
    return Caller(principal.owner, principal.is_admin) if principal is not None else Caller()


# The reply is documented in the OpenAPI; with stream: true it comes as server-sent events instead.
_REPLY: dict[int | str, dict[str, Any]] = {200: {"model": ResponseObject}}


@router.post("/responses", response_model=None, responses=_REPLY)
async def create_response(body: ResponsesRequest, request: Request) -> ResponseObject | EventSourceResponse:
    serving, caller = _serving(request), _caller(request)
    events, reply = partial(serving.stream, body), partial(serving.respond, body)
    return await answer(request, body.model, serving.start(body, caller), body.stream, events, reply)


@router.get("/responses/{response_id}", response_model=None, responses=_REPLY)
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    """The response as it was stored (the JSON it was answered with)."""
    return await _serving(request).get(response_id, _caller(request))


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> DeletedResponse:
    return await _serving(request).delete(response_id, _caller(request))
