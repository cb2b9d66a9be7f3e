"""Dependencies of the /api routes: a database session, the signed-in user (admins: api/security.py's Admin).

They are plain functions, so FastAPI runs them (and the routes that are plain functions) on its thread pool:
SQLite and argon2 block, and the event loop keeps serving tokens meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlmodel import Session

from mlx_manager.api.security import ApiKeyDoc, BearerDoc, remember
from mlx_manager.db.models import User
from mlx_manager.manager.auth import presented_credential
from mlx_manager.manager.errors import AuthenticationFailed
from mlx_manager.manager.services import Manager

T = TypeVar("T")


def get_manager(request: Request) -> Manager:
    manager: Manager = request.app.state.manager
    return manager


ManagerDep = Annotated[Manager, Depends(get_manager)]


def get_session(manager: ManagerDep) -> Iterator[Session]:
    with Session(manager.db, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_user(
    request: Request,
    manager: ManagerDep,
    session: SessionDep,
    _bearer: BearerDoc,
    _key: ApiKeyDoc,
) -> User:
    """The user behind the session token or API key. The server's --api-key is no user: it is refused here."""
    token = presented_credential(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if token is None:
        raise AuthenticationFailed(
            "Sign in first: send 'Authorization: Bearer TOKEN' with a session token from POST /api/auth/login"
            " or an API key.",
            "not_authenticated",
        )
    if not manager.auth.is_ours(token):
        raise AuthenticationFailed("Incorrect session token or API key.", "invalid_token")
    principal, user = manager.auth.identify(session, token)
    remember(request, principal)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def client_address(request: Request) -> str:
    """The caller's address, what rate limits count by (behind a reverse proxy: the proxy's; headers naming
    another address are not trusted, since anyone can send them)."""
    return request.client.host if request.client else "unknown"


async def write_then(manager: Manager, change: Callable[[Session], T], reload: Callable[[], None]) -> T:
    """Run a change in its own session off the event loop, then refresh the in-memory view the APIs read."""

    def run() -> T:
        with Session(manager.db, expire_on_commit=False) as session:
            return change(session)

    try:
        return await asyncio.to_thread(run)
    finally:
        await asyncio.to_thread(reload)
