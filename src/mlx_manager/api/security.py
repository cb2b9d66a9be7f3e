"""Who may call the model APIs, /admin and /metrics. Errors keep each API's own shape (OpenAI's or Anthropic's).

Accepted credentials, as `Authorization: Bearer …` or `x-api-key`: the configured server key (`--api-key`,
compared in constant time), a user's API key (`mlxm-…`, by its SHA-256) and a UI session token (JWT).

- `/v1`, the Anthropic routes and `/rerank` (`require_api_key`): a credential is required when a server key is
  configured or the `require_api_key` setting is on. Otherwise the server is open (loopback) and anything else
  sent, such as an SDK's placeholder key, is ignored; but a user key or session token is always checked, so a
  revoked key or an expired session is a 401 even there.
- Every admin route, `/admin`, `/metrics` and the `/api` routes that manage the server (`require_admin`, the one
  admin dependency): an administrator is the server key or an admin user's key or session. They are open only
  where anyone may make the first, admin account anyway (manager/signup.py: loopback, no server key, no account
  yet) and `require_api_key` is off. On the `/api` routes, which act for a signed-in user (the UI), the server
  key is no user: a 401 there. A non-admin is a 403.
- `GET /admin/models` also takes the server's status token (`mlx_manager.status_token`), so that
  `mlx-manager status` run by the server's owner lists the loaded models without an account.

The caller's user and key ids go to `request.state` for the audit log.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from mlx_manager import status_token
from mlx_manager.api.errors import APIError, is_problem_path
from mlx_manager.manager.auth import Principal, presented_credential
from mlx_manager.manager.errors import AuthenticationFailed
from mlx_manager.manager.services import Manager

# Declared for the OpenAPI schema (clients see how to authenticate); the checks read the headers themselves.
bearer_scheme = HTTPBearer(auto_error=False, description="A session token from POST /api/auth/login, or an API key.")
x_api_key_scheme = APIKeyHeader(name="x-api-key", auto_error=False, description="An API key.")
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ApiKeyDoc = Annotated[str | None, Depends(x_api_key_scheme)]


def _manager(request: Request) -> Manager:
    manager: Manager = request.app.state.manager
    return manager


def _token(request: Request) -> str | None:
    return presented_credential(request.headers.get("authorization"), request.headers.get("x-api-key"))


def _unauthorized(message: str, code: str | None) -> APIError:
    return APIError(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})


def _missing() -> APIError:
    return _unauthorized(
        "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.", code="missing_api_key"
    )


def _invalid() -> APIError:
    return _unauthorized("Incorrect API key provided.", code="invalid_api_key")


def remember(request: Request, principal: Principal) -> None:
    request.state.principal = principal
    request.state.user_id = principal.user_id
    request.state.api_key_id = principal.api_key_id


async def _authenticate(request: Request, token: str) -> Principal:
    manager = _manager(request)
    try:
        principal = await asyncio.to_thread(manager.auth.authenticate, token)
    except AuthenticationFailed as exc:
        raise _unauthorized(exc.message, exc.code) from exc
    remember(request, principal)
    if principal.api_key_id is not None:
        manager.audit.key_used(principal.api_key_id)
    return principal


async def _check(request: Request, required: bool) -> Principal | None:
    """The caller, None for an anonymous one where that is allowed; 401 otherwise."""
    auth = _manager(request).auth
    token = _token(request)
    if token is None:
        if required:
            raise _missing()
        return None
    if auth.is_server_key(token):
        principal = Principal(via="server_key", is_admin=True)
        remember(request, principal)
        return principal
    if auth.is_ours(token):
        return await _authenticate(request, token)
    if required:
        raise _invalid()
    return None


async def require_api_key(request: Request) -> None:
    """The model APIs: /v1, /anthropic, /rerank."""
    manager = _manager(request)
    await _check(request, manager.auth.server_key is not None or manager.settings.current.require_api_key)


async def require_admin(request: Request, _bearer: BearerDoc = None, _key: ApiKeyDoc = None) -> Principal | None:
    """The one admin rule (module docstring); None: an anonymous caller where no one could be asked yet."""
    manager = _manager(request)
    required = manager.setup.guarded or manager.settings.current.require_api_key
    if not required:
        required = await asyncio.to_thread(manager.auth.has_users)
    principal = await _check(request, required)
    as_user = is_problem_path(request.url.path)
    if principal is not None and as_user and principal.via == "server_key":
        raise _unauthorized("The server key is no user here: sign in, or use an admin's API key.", "invalid_token")
    if principal is not None and not principal.is_admin:
        code = "admin_required" if as_user else "permission_denied"
        raise APIError(403, "This needs an administrator's API key or session.", code=code)
    return principal


Admin = Annotated[Principal | None, Depends(require_admin)]


async def require_admin_or_status_token(request: Request) -> None:
    """GET /admin/models: the status token (read-only, the server owner's), else as any /admin route."""
    if not status_token.matches(_token(request), getattr(request.app.state, "status_token", None)):
        await require_admin(request)
