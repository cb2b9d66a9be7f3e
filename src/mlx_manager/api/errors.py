"""Errors with the right status in each API's own shape (OpenAI's, Anthropic's on its routes, RFC 7807
problem details on the manager's /api routes); validation failures are 400, never 422."""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlx_manager.api.anthropic.errors import anthropic_error_body, is_anthropic_path
from mlx_manager.api.base_url_hint import base_url_hint, is_messages_miss
from mlx_manager.api.ollama.errors import is_ollama_path, ollama_error_body
from mlx_manager.engine.errors import (
    ContextLengthError,
    EngineError,
    InvalidRequestError,
    MemoryBudgetError,
    MemoryPressureError,
    ModelLoadError,
    ModelNotFoundError,
    ModelUnavailableError,
    QueueFullError,
    QueueTimeoutError,
)
from mlx_manager.manager.errors import ManagerError

log = logging.getLogger(__name__)


@dataclass(eq=False)  # compared and hashed by identity, as exceptions are
class APIError(Exception):
    status: int
    message: str
    _: KW_ONLY
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] | None = None
    extra: dict[str, Any] | None = None  # extension members of an RFC 7807 problem (the /api routes only)

    def __post_init__(self) -> None:
        super().__init__(self.message)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object; `request_id` (the X-Request-ID) is an extra member, which the SDKs keep in `body`."""
    error: dict[str, Any] = {"message": message, "type": type, "param": param, "code": code}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


def request_id_of(request: Request) -> str | None:
    """The id RequestIdMiddleware gave this request (also in the X-Request-ID header)."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


PROBLEM_JSON = "application/problem+json"


def is_problem_path(path: str) -> bool:
    """The manager's routes, which answer errors as RFC 7807 problem details (Ollama's, under /api too, do not)."""
    return (path == "/api" or path.startswith("/api/")) and not is_ollama_path(path)


def problem_body(
    status: int,
    detail: str,
    instance: str,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """RFC 7807, the one builder of every /api problem: `type` about:blank with the status phrase as `title`;
    `code` says which problem it is, `request_id` finds it in the server log, `extra` adds extension members."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["instance"] = instance
    if code is not None:
        body["code"] = code
    if errors is not None:
        body["errors"] = errors
    if request_id is not None:
        body["request_id"] = request_id
    return body | (extra or {})


def from_manager_error(exc: ManagerError) -> APIError:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return APIError(exc.status, exc.message, code=exc.code, headers={**headers, **(exc.headers or {})} or None)


def from_engine_error(exc: EngineError) -> APIError:
    from mlx_manager.routing.router import NoBackendError  # routing imports the engine, not this module

    if isinstance(exc, NoBackendError):
        status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 502
        kind = "invalid_request_error" if status < 500 else "server_error"
        return APIError(status, exc.message, type=kind, code="backend_failed" if status == 502 else None)
    if isinstance(exc, ModelNotFoundError):
        return APIError(404, exc.message, param="model", code="model_not_found")
    if isinstance(exc, ContextLengthError):
        return APIError(400, exc.message, param=exc.param, code="context_length_exceeded")
    if isinstance(exc, InvalidRequestError):
        return APIError(400, exc.message, param=exc.param)
    if isinstance(exc, ModelUnavailableError):
        headers = {"Retry-After": str(exc.retry_after)}
        return APIError(503, exc.message, type="server_error", code="model_unavailable", headers=headers)
    if isinstance(exc, MemoryPressureError):
        headers = {"Retry-After": str(exc.retry_after)}
        return APIError(503, exc.message, type="server_error", code="memory_pressure", headers=headers)
    if isinstance(exc, QueueTimeoutError):
        headers = {"Retry-After": str(exc.retry_after)}
        return APIError(503, exc.message, type="server_error", code="queue_timeout", headers=headers)
    if isinstance(exc, QueueFullError):
        return APIError(
            429, exc.message, type="rate_limit_error", code="queue_full", headers={"Retry-After": str(exc.retry_after)}
        )
    if isinstance(exc, MemoryBudgetError):
        return APIError(507, exc.message, type="server_error", code="insufficient_memory")
    if isinstance(exc, ModelLoadError):
        return APIError(500, exc.message, type="server_error", code="model_load_failed")
    return APIError(500, exc.message, type="server_error")


def _param(loc: tuple[Any, ...], body: Any = None, missing: bool = False) -> str | None:
    # Only the leading location is dropped: a body field may itself be called "query" (rerank).
    if loc and loc[0] == "body" and body is not None:
        loc = _in_body(loc[1:], body, missing)
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)]
    return ".".join(parts) or None


def _in_body(loc: tuple[Any, ...], body: Any, missing: bool) -> tuple[Any, ...]:
    """The location without the union members pydantic tried (`str`, `list[str]`, a model's name): walking the
    body tells a field from a tag. Only a missing field may name what the body does not hold."""
    kept: list[Any] = []
    node = body
    for i, part in enumerate(loc):
        if isinstance(node, list):
            holds = isinstance(part, int) and 0 <= part < len(node)
        else:
            holds = isinstance(node, dict) and part in node
        if holds:
            node = node[part]
        if holds or (missing and i == len(loc) - 1):
            kept.append(part)
    return ("body", *kept)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = tuple(first.get("loc", ()))
    param = _param(loc, exc.body, first.get("type") == "missing")
    if first.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    if first.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param
    msg = str(first.get("msg", "Invalid request"))
    return (f"Invalid value for '{param}': {msg}" if param else msg), param


def error_response(request: Request, exc: APIError) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(exc.code or exc.type).inc()
    request_id = request_id_of(request)
    if is_problem_path(request.url.path):
        problem = problem_body(exc.status, exc.message, request.url.path, exc.code, None, request_id, exc.extra)
        return JSONResponse(problem, exc.status, headers=exc.headers, media_type=PROBLEM_JSON)
    if is_anthropic_path(request.url.path) or is_messages_miss(request.url.path):
        body = anthropic_error_body(exc.status, exc.message, request_id)
    elif is_ollama_path(request.url.path):
        body = ollama_error_body(exc.message)
    else:
        body = error_body(exc.message, exc.type, exc.param, exc.code, request_id)
    return JSONResponse(body, exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return error_response(request, exc)

    async def engine_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EngineError)
        return await api_error(request, from_engine_error(exc))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = validation_message(exc)
        if is_problem_path(request.url.path):
            errors = [
                {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
                for e in exc.errors()
            ]
            body = problem_body(400, message, request.url.path, "invalid_request", errors, request_id_of(request))
            return JSONResponse(body, 400, media_type=PROBLEM_JSON)
        return error_response(request, APIError(400, message, param=param))

    async def manager_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ManagerError)
        return error_response(request, from_manager_error(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        headers = getattr(exc, "headers", None)
        hint = base_url_hint(request) if exc.status_code == 404 else None
        error = APIError(exc.status_code, hint or str(exc.detail), type=kind, code=code, headers=headers)
        return error_response(request, error)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(EngineError, engine_error)
    app.add_exception_handler(ManagerError, manager_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
