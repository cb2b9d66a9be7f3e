"""HubError as an RFC 7807 problem with its extension members (the numbers of a 507, the id of a conflicting
download). The shared handler for ManagerError renders the same shape without those members; this one is
registered for the subclass, so it wins for hub and download problems. Both go through api/errors.py."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlx_manager.api.errors import APIError, error_response
from mlx_manager.manager.hub_errors import HubError


async def _hub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    headers = {"Retry-After": "30"} if exc.status == 502 else None  # offline (503) is a setting: retrying is no use
    return error_response(request, APIError(exc.status, exc.detail, code=exc.code, headers=headers, extra=exc.extra))


def install_hub_problems(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _hub_error)
