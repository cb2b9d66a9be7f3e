"""Who may call the model APIs, /admin and /metrics. Errors keep each API's own shape (OpenAI's or Anthropic's).

Accepted credentials, as `Authorization: Bearer …` or `x-api-key`: the configured server key (`--api-key`,
compared in constant time), a user's API key (`mlxm-…`, by its SHA-256) and a UI session token (JWT).

- `/v1`, the Anthropic routes and `/rerank` (`require_api_key`): a credential is required when a server key is
  configured or the `require_api_key` setting is on. Otherwise the server is open (loopback) and anything else
  sent, such as an SDK's placeholder key, is ignored; but a user key or session token is always checked, so a
  revoked key or an expired session is a 401 even there.
- `/admin` and `/metrics` (`require_admin`): as above, and once users exist they need the server key or an
  admin's key or session (a 401 without a credential, a 403 for a non-admin).
- `GET /admin/models` also takes the server's status token (`mlx_manager.status_token`), so that
  `mlx-manager status` run by the server's owner lists the loaded models without an account.

The caller's user and key ids go to `request.state` for the audit log.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from mlx_manager import status_token
from mlx_manager.api.errors import APIError
from mlx_manager.manager.auth import Principal, presented_credential
from mlx_manager.manager.errors import AuthenticationFailed
from mlx_manager.manager.services import Manager


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


async def require_admin(request: Request) -> None:
    """/admin and /metrics: the server key or an admin once anyone could be asked for one."""
    manager = _manager(request)
    required = manager.auth.server_key is not None or manager.settings.current.require_api_key
    if not required:
        required = await asyncio.to_thread(manager.auth.has_users)
    principal = await _check(request, required)
    if principal is not None and not principal.is_admin:
        raise APIError(403, "This needs an administrator's API key or session.", code="permission_denied")


async def require_admin_or_status_token(request: Request) -> None:
    """GET /admin/models: the status token (read-only, the server owner's), else as any /admin route."""
    if not status_token.matches(_token(request), getattr(request.app.state, "status_token", None)):
        await require_admin(request)
