"""Accounts: the first one registered is the approved admin; later ones wait for an admin's approval.
There is always at least one approved admin: the last one cannot be removed, demoted or unapproved.
Usernames are unique regardless of case and sign in regardless of case; they are shown as typed.
Suspending or deleting a user, or changing their password, ends all their sessions."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from mlx_manager.db.models import ApiKey, StoredResponse, User
from mlx_manager.manager import auth, chats
from mlx_manager.manager.errors import AuthenticationFailed, Conflict, PermissionDenied, WrongPassword
from mlx_manager.manager.rows import get_row

log = logging.getLogger(__name__)

# Two registrations at once must not both find the table empty and both become admin.
_register_lock = threading.Lock()


def by_username(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(func.lower(User.username) == username.lower())).first()


def _has_users(session: Session) -> bool:
    return session.exec(select(User.id).limit(1)).first() is not None


def _may_register(first: bool, first_allowed: bool, later_allowed: bool) -> None:
    if first and not first_allowed:
        raise PermissionDenied(
            "Creating the first account (the administrator) on this server needs the one-time setup token printed"
            " in the server's log at start, or the server's API key, as 'setup_token'.",
            "setup_token_required",
        )
    if not first and not later_allowed:
        raise PermissionDenied(
            "Registration is switched off on this server; ask an administrator for an account.", "registration_closed"
        )


def register(
    session: Session,
    username: str,
    password: str,
    *,
    first_allowed: bool = True,
    later_allowed: bool = True,
    approved: bool = False,
) -> User:
    """A new account: the first one is the approved admin (if `first_allowed`: the setup token was shown);
    later ones wait for approval (unless `approved`: an admin made it) and need `later_allowed`."""
    _may_register(not _has_users(session), first_allowed, later_allowed)  # refused before the costly hash
    password_hash = auth.hash_password(password)  # slow on purpose: outside the lock
    with _register_lock:
        first = not _has_users(session)
        _may_register(first, first_allowed, later_allowed)
        if by_username(session, username) is not None:
            raise Conflict(f"The username '{username}' is taken.", "username_taken")
        user = User(username=username, password_hash=password_hash, is_admin=first, is_approved=first or approved)
        session.add(user)
        if first:
            chats.adopt_anonymous(session, user.uid)  # the chats of open mode become the administrator's
        session.commit()
        session.refresh(user)
    if first:
        log.warning("The first account, '%s', was created: it is the administrator.", username)
    return user


def login(session: Session, username: str, password: str) -> User:
    user = by_username(session, username)
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
    return get_row(session, User, user_id, f"User {user_id} not found.", "user_not_found")


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
        if not is_approved:  # suspended: signed out everywhere (their keys fail while they are unapproved)
            auth.Authenticator.end_sessions(session, user_id)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def approve(session: Session, user_id: int) -> User:
    return update(session, user_id, is_approved=True)


def delete_user(session: Session, user_id: int) -> None:
    """Remove the account, its sessions, API keys, stored responses and chats; its audit entries stay (they name the
    user id, which is never given to anyone else)."""
    user = get_user(session, user_id)
    if _is_last_admin(session, user):
        raise Conflict("This is the last administrator; it cannot be deleted.", "last_admin")
    auth.Authenticator.end_sessions(session, user_id)
    session.exec(delete(ApiKey).where(col(ApiKey.user_id) == user_id))
    session.exec(delete(StoredResponse).where(col(StoredResponse.owner) == user.uid))
    chats.delete_owned(session, user.uid)
    session.delete(user)
    session.commit()


def change_password(session: Session, user: User, current: str, new: str) -> User:
    """Set a new password once the current one is confirmed; every session of the user ends (the caller gets a
    new one). API keys keep working: revoke them separately."""
    if not auth.verify_password(user.password_hash, current):
        raise WrongPassword("The current password is not correct.", "invalid_credentials")
    assert user.id is not None
    user.password_hash = auth.hash_password(new)
    auth.Authenticator.end_sessions(session, user.id)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def revoke_sessions(session: Session, user_id: int) -> int:
    """End every session of the user (an admin's action); how many there were."""
    get_user(session, user_id)
    ended = auth.Authenticator.end_sessions(session, user_id)
    session.commit()
    return ended
