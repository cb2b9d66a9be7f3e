"""Anthropic's error shape: {"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}, typed by
status (the real API sends its request id in the body as well as in a header)."""

from __future__ import annotations

from typing import Any

# The routes that answer in Anthropic's shape; everything else speaks OpenAI's.
PATH_PREFIXES = ("/v1/messages", "/anthropic/")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def is_anthropic_path(path: str) -> bool:
    return path.startswith(PATH_PREFIXES)


def anthropic_error_body(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body
