"""/api/auth (register, log in, who am I) and /api/users (admin: list, approve, change, delete)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mlx_manager.api.manager.deps import AdminUser, CurrentUser, ManagerDep, SessionDep
from mlx_manager.api.manager.fields import RowId
from mlx_manager.api.manager.schemas import (
    AuthStatus,
    LoginRequest,
    SessionToken,
    UserCreate,
    UserPublic,
    UserUpdate,
    problems,
)
from mlx_manager.db.models import User
from mlx_manager.manager import users

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"], responses=problems(401, 403))


def public(user: User) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


@auth_router.get("/status")
def auth_status(manager: ManagerDep) -> AuthStatus:
    """Whether any account exists yet (the UI offers to create the admin account when none does)."""
    return AuthStatus(has_users=manager.auth.has_users())


@auth_router.post("/register", status_code=201, responses=problems(400, 409))
def register(body: UserCreate, session: SessionDep) -> UserPublic:
    """The first account becomes the approved admin; later ones wait for an admin's approval."""
    return public(users.register(session, body.username, body.password))


@auth_router.post("/login", responses=problems(400, 401, 403))
def login(body: LoginRequest, session: SessionDep, manager: ManagerDep) -> SessionToken:
    """A session token (JWT, 7 days) for the UI's routes and the model APIs. 403 while awaiting approval."""
    user = users.login(session, body.username, body.password)
    token, expires_at = manager.auth.issue_session(user)
    return SessionToken(access_token=token, expires_at=expires_at, user=public(user))


@auth_router.get("/me", responses=problems(401))
def me(user: CurrentUser) -> UserPublic:
    return public(user)


@users_router.get("")
def list_users(_: AdminUser, session: SessionDep) -> list[UserPublic]:
    return [public(u) for u in users.list_users(session)]


@users_router.post("/{user_id}/approve", responses=problems(404))
def approve_user(user_id: RowId, _: AdminUser, session: SessionDep) -> UserPublic:
    return public(users.approve(session, user_id))


@users_router.patch("/{user_id}", responses=problems(400, 404, 409))
def update_user(user_id: RowId, body: UserUpdate, _: AdminUser, session: SessionDep) -> UserPublic:
    """Make a user an admin or not, approve or suspend; the last admin cannot be demoted (409)."""
    return public(users.update(session, user_id, is_admin=body.is_admin, is_approved=body.is_approved))


@users_router.delete("/{user_id}", status_code=204, responses=problems(404, 409))
def delete_user(user_id: RowId, _: AdminUser, session: SessionDep) -> Response:
    """Delete a user and their API keys; never the last admin (409)."""
    users.delete_user(session, user_id)
    return Response(status_code=204)
