"""/api/auth (register, log in and out, change one's password, who am I) and /api/users (admin: list, add,
approve, change, end sessions, delete). Sign-ins, registrations and password checks are rate limited (429)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from mlx_manager.api.manager.deps import CurrentUser, ManagerDep, SessionDep, client_address
from mlx_manager.api.manager.fields import RowId
from mlx_manager.api.manager.schemas import (
    AuthStatus,
    LoginRequest,
    PasswordChange,
    RegisterRequest,
    SessionsRevoked,
    SessionToken,
    UserCreate,
    UserPublic,
    UserUpdate,
    problems,
)
from mlx_manager.api.security import Admin
from mlx_manager.db.models import User
from mlx_manager.manager import users
from mlx_manager.manager.errors import AuthenticationFailed, InvalidInput, WrongPassword
from mlx_manager.manager.services import Manager

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"], responses=problems(401, 403))


def public(user: User) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


def _new_session(manager: Manager, session: Session, user: User) -> SessionToken:
    token, expires_at = manager.auth.issue_session(session, user)
    return SessionToken(access_token=token, expires_at=expires_at, user=public(user))


@auth_router.get("/status")
def auth_status(manager: ManagerDep) -> AuthStatus:
    """Whether any account exists yet (the UI offers to create the admin account when none does), whether that
    needs the setup token, and whether registration is open."""
    has_users = manager.auth.has_users()
    return AuthStatus(
        has_users=has_users,
        setup_required=not has_users and manager.setup.guarded,
        registration_open=not has_users or manager.settings.current.allow_registration,
    )


@auth_router.post("/register", status_code=201, responses=problems(400, 403, 409, 429))
def register(body: RegisterRequest, request: Request, session: SessionDep, manager: ManagerDep) -> UserPublic:
    """The first account becomes the approved admin (with `setup_token` where the server asks for it: 403
    `setup_token_required` otherwise); later ones wait for an admin's approval, or get 403 `registration_closed`."""
    manager.limits.register.hit(f"client:{client_address(request)}")
    user = users.register(
        session,
        body.username,
        body.password,
        first_allowed=manager.setup.accepts(body.setup_token),
        later_allowed=manager.settings.current.allow_registration,
    )
    if user.is_admin:
        manager.setup.used()
    return public(user)


@auth_router.post("/login", responses=problems(400, 401, 403, 429))
def login(body: LoginRequest, request: Request, session: SessionDep, manager: ManagerDep) -> SessionToken:
    """A session token (JWT, 7 days) for the UI's routes and the model APIs. 403 while awaiting approval; 429
    after too many failures from one address or for one username."""
    keys = (f"client:{client_address(request)}", f"user:{body.username.lower()}")
    with manager.limits.login.attempt(*keys, failures=(AuthenticationFailed,)):
        user = users.login(session, body.username, body.password)
    return _new_session(manager, session, user)


@auth_router.post("/logout", status_code=204, responses=problems(400, 401))
def logout(request: Request, _: CurrentUser, session: SessionDep, manager: ManagerDep) -> Response:
    """End the session whose token this is (other sessions of the user go on)."""
    session_id = request.state.principal.session_id
    if session_id is None:
        raise InvalidInput(
            "Only a session signs out: revoke an API key with DELETE /api/keys/{key_id}.", "not_a_session"
        )
    manager.auth.end_session(session, session_id)
    return Response(status_code=204)


@auth_router.post("/password", responses=problems(400, 401, 403, 429))
def change_password(
    body: PasswordChange, request: Request, user: CurrentUser, session: SessionDep, manager: ManagerDep
) -> SessionToken:
    """Change the caller's password (403 if `current_password` is wrong). Every session of theirs ends; the
    answer is a new one. API keys keep working."""
    keys = (f"client:{client_address(request)}", f"user:{user.username.lower()}")
    with manager.limits.login.attempt(*keys, failures=(WrongPassword,)):
        users.change_password(session, user, body.current_password, body.new_password)
    return _new_session(manager, session, user)


@auth_router.get("/me", responses=problems(401))
def me(user: CurrentUser) -> UserPublic:
    return public(user)


@users_router.get("")
def list_users(_: Admin, session: SessionDep) -> list[UserPublic]:
    return [public(u) for u in users.list_users(session)]


@users_router.post("", status_code=201, responses=problems(400, 409))
def create_user(body: UserCreate, _: Admin, session: SessionDep) -> UserPublic:
    """Add an approved user (also while registration is switched off)."""
    return public(users.register(session, body.username, body.password, approved=True))


@users_router.post("/{user_id}/revoke-sessions", responses=problems(404))
def revoke_sessions(user_id: RowId, _: Admin, session: SessionDep) -> SessionsRevoked:
    """Sign the user out everywhere: every session token of theirs stops working (API keys are revoked apart)."""
    return SessionsRevoked(user_id=user_id, sessions_ended=users.revoke_sessions(session, user_id))


@users_router.post("/{user_id}/approve", responses=problems(404))
def approve_user(user_id: RowId, _: Admin, session: SessionDep) -> UserPublic:
    return public(users.approve(session, user_id))


@users_router.patch("/{user_id}", responses=problems(400, 404, 409))
def update_user(user_id: RowId, body: UserUpdate, _: Admin, session: SessionDep) -> UserPublic:
    """Make a user an admin or not, approve or suspend (their sessions end); the last admin cannot be demoted
    (409)."""
    return public(users.update(session, user_id, is_admin=body.is_admin, is_approved=body.is_approved))


@users_router.delete("/{user_id}", status_code=204, responses=problems(404, 409))
def delete_user(user_id: RowId, _: Admin, session: SessionDep) -> Response:
    """Delete a user with their sessions, API keys and stored responses; never the last admin (409)."""
    users.delete_user(session, user_id)
    return Response(status_code=204)
