"""API key check for /v1 and /admin, in constant time."""

from __future__ import annotations

import secrets

from fastapi import Request

from mlx_manager.api.errors import APIError


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


async def require_api_key(request: Request) -> None:
    expected: str | None = request.app.state.api_key
    if not expected:
        return
    presented = _presented_key(request)
    if presented is None:
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(presented.encode(), expected.encode()):
        raise APIError(
            401, "Incorrect API key provided.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
