"""RFC 7807 rendering of HubError, with its extension members (the numbers of a 507, the id of a conflicting
download). The shared handler for ManagerError renders the same shape without those members; this one is
registered for the subclass, so it wins for hub and download problems."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlx_manager.api.errors import request_id_of
from mlx_manager.manager.hub_errors import HubError

PROBLEM_JSON = "application/problem+json"


def hub_problem_body(exc: HubError, instance: str, request_id: str | None = None) -> dict[str, Any]:
    try:
        title = HTTPStatus(exc.status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": exc.status, "detail": exc.detail}
    ids = {"request_id": request_id} if request_id is not None else {}
    return body | {"instance": instance, "code": exc.code} | ids | exc.extra


async def _hub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(exc.code or "hub_error").inc()
    headers = {"Retry-After": "30"} if exc.status == 502 else None  # offline (503) is a setting: retrying is no use
    body = hub_problem_body(exc, request.url.path, request_id_of(request))
    return JSONResponse(body, exc.status, headers=headers, media_type=PROBLEM_JSON)


def install_hub_problems(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _hub_error)
