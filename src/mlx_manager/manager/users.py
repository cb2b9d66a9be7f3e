"""Accounts: the first one registered is the approved admin; later ones wait for an admin's approval.
There is always at least one approved admin: the last one cannot be removed, demoted or unapproved."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from mlx_manager.db.models import ApiKey, User
from mlx_manager.manager import auth
from mlx_manager.manager.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied

# Two registrations at once must not both find the table empty and both become admin.
_register_lock = threading.Lock()


def register(session: Session, username: str, password: str) -> User:
    password_hash = auth.hash_password(password)  # slow on purpose: outside the lock
    with _register_lock:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            raise Conflict(f"The username '{username}' is taken.", "username_taken")
        first = session.exec(select(User.id).limit(1)).first() is None
        user = User(username=username, password_hash=password_hash, is_admin=first, is_approved=first)
        session.add(user)
        session.commit()
        session.refresh(user)
        return user


def login(session: Session, username: str, password: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if not auth.verify_password(user.password_hash if user else None, password) or user is None:
        raise AuthenticationFailed("Incorrect username or password.", "invalid_credentials")
    if not user.is_approved:
        raise PermissionDenied("This account is waiting for an administrator's approval.", "not_approved")
    if auth.needs_rehash(user.password_hash):
        user.password_hash = auth.hash_password(password)
    user.last_login_at = time.time()
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id))).all())


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found.", "user_not_found")
    return user


def _is_last_admin(session: Session, user: User) -> bool:
    if not (user.is_admin and user.is_approved):
        return False
    admins = session.exec(select(func.count()).select_from(User).where(col(User.is_admin), col(User.is_approved))).one()
    return int(admins) <= 1


def update(session: Session, user_id: int, *, is_admin: bool | None = None, is_approved: bool | None = None) -> User:
    user = get_user(session, user_id)
    if (is_admin is False or is_approved is False) and _is_last_admin(session, user):
        raise Conflict("This is the last administrator; make another user an administrator first.", "last_admin")
    if is_admin is not None:
        user.is_admin = is_admin
    if is_approved is not None:
        user.is_approved = is_approved
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def approve(session: Session, user_id: int) -> User:
    return update(session, user_id, is_approved=True)


def delete_user(session: Session, user_id: int) -> None:
    """Remove the account and its API keys; its audit entries stay (they name the user id)."""
    user = get_user(session, user_id)
    if _is_last_admin(session, user):
        raise Conflict("This is the last administrator; it cannot be deleted.", "last_admin")
    session.exec(delete(ApiKey).where(col(ApiKey.user_id) == user_id))
    session.delete(user)
    session.commit()
