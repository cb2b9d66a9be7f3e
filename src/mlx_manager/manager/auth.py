"""Who is calling: argon2 passwords, HS256 session tokens (JWT) and per-user API keys (stored as SHA-256).

Three credentials are accepted, all as `Authorization: Bearer …` or `x-api-key`: the server's configured key
(`--api-key`, admin rights, no user), a user's API key (`mlxm-…`) and a UI session token. Every check compares
hashes or HMACs in constant time. The calls that read the database block: run them off the event loop.

A session token names the user by their random `uid` (never reused, unlike a row id) and its own row in the
`sessions` table (`sid`): logout deletes that row, and a password change, a suspension, a deletion or an admin's
revocation delete all of the user's rows, so the token stops working at once although its signature still holds.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine
from sqlmodel import Session, col, delete, select

from mlx_manager.db.models import ApiKey, User, UserSession
from mlx_manager.manager.errors import AuthenticationFailed

KEY_PREFIX = "mlxm-"
DISPLAY_PREFIX_CHARS = 12  # "mlxm-" and 7 random characters: enough to tell keys apart, far too few to guess
SESSION_SECONDS = 7 * 24 * 3600
_ALGORITHM = "HS256"
SERVER_OWNER = "server"  # what the server key's stored responses are owned by
# Each argon2 hash takes 64 MiB for ~50 ms: a burst of logins queues here instead of taking all memory.
HASH_CONCURRENCY = 2
_hashing = threading.BoundedSemaphore(HASH_CONCURRENCY)


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


_dummy: list[str] = []
_dummy_lock = threading.Lock()


def _dummy_hash() -> str:
    """A hash to check unknown usernames against, made once (a burst of them must not each make one)."""
    with _dummy_lock:
        if not _dummy:
            _dummy.append(hash_password(secrets.token_urlsafe(16)))
        return _dummy[0]


def hash_password(password: str) -> str:
    with _hashing:
        return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; an unknown user is checked against a dummy hash so timing tells nothing."""
    dummy = _dummy_hash() if password_hash is None else None  # hashed outside the semaphore: it takes it too
    try:
        with _hashing:
            return _hasher().verify(password_hash or dummy or "", password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: (the key, shown once; its display prefix; its SHA-256 hex digest, what is stored)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:DISPLAY_PREFIX_CHARS], key_digest(key)


def presented_credential(authorization: str | None, x_api_key: str | None) -> str | None:
    """The token from `Authorization: Bearer TOKEN`, else `x-api-key` (the Anthropic SDK's header)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return x_api_key or None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. The server key has admin rights and no user."""

    via: Literal["server_key", "api_key", "session"]
    is_admin: bool
    user_id: int | None = None
    api_key_id: int | None = None
    user_uid: str | None = None
    session_id: str | None = None

    @property
    def owner(self) -> str:
        """Whose things (stored responses) this caller makes: the user's uid, or "server" for the server key."""
        return self.user_uid or SERVER_OWNER


class Authenticator:
    def __init__(self, db: Engine, secret: str, server_key: str | None) -> None:
        self.db = db
        self._secret = secret
        self.server_key = server_key

    # --- sessions ---------------------------------------------------------------------------

    def issue_session(self, session: Session, user: User, now: float | None = None) -> tuple[str, float]:
        """A new session for the user (a `sessions` row, committed) and its signed token, with when it expires."""
        assert user.id is not None
        issued = int(now if now is not None else time.time())
        expires = issued + SESSION_SECONDS
        sid = secrets.token_urlsafe(16)
        session.exec(delete(UserSession).where(col(UserSession.expires_at) < issued))  # ended ones go on the way
        session.add(UserSession(id=sid, user_id=user.id, created_at=issued, expires_at=expires))
        session.commit()
        claims = {"sub": user.uid, "sid": sid, "iat": issued, "exp": expires, "typ": "session"}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM), float(expires)

    def _session_claims(self, token: str) -> tuple[str, str]:
        """The token's user uid and session id, once its signature and expiry hold."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("Your session has expired; sign in again.", "session_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("Incorrect API key provided.", "invalid_api_key") from exc
        sub, sid = claims.get("sub"), claims.get("sid")
        if claims.get("typ") != "session" or not isinstance(sub, str) or not isinstance(sid, str):
            raise AuthenticationFailed("Incorrect API key provided.", "invalid_api_key")  # older tokens have no sid
        return sub, sid

    @staticmethod
    def end_session(session: Session, session_id: str) -> None:
        session.exec(delete(UserSession).where(col(UserSession.id) == session_id))
        session.commit()

    @staticmethod
    def end_sessions(session: Session, user_id: int) -> int:
        """End every session of the user (no commit: it goes with the change that calls for it)."""
        result = session.exec(delete(UserSession).where(col(UserSession.user_id) == user_id))
        return int(result.rowcount or 0)

    # --- any credential ---------------------------------------------------------------------

    def is_server_key(self, token: str) -> bool:
        return self.server_key is not None and secrets.compare_digest(token.encode(), self.server_key.encode())

    @staticmethod
    def is_ours(token: str) -> bool:
        """A user key or a session token by its form: such a credential is checked even where none is required,
        so a revoked key is refused rather than silently ignored."""
        return token.startswith(KEY_PREFIX) or (token.startswith("eyJ") and token.count(".") == 2)

    def authenticate(self, token: str) -> Principal:
        """The caller behind any accepted credential, or AuthenticationFailed."""
        if self.is_server_key(token):
            return Principal(via="server_key", is_admin=True)
        with Session(self.db) as session:
            return self.identify(session, token)[0]

    def identify(self, session: Session, token: str) -> tuple[Principal, User]:
        """The user behind an API key or a session token (the server key is no user)."""
        if token.startswith(KEY_PREFIX):
            digest = key_digest(token)
            row = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
            if row is None or not secrets.compare_digest(row.key_hash, digest):
                raise AuthenticationFailed("Incorrect API key provided.", "invalid_api_key")
            if row.revoked_at is not None:
                raise AuthenticationFailed("This API key has been revoked.", "revoked_api_key")
            user = self._active_user(session, row.user_id)
            principal = Principal("api_key", user.is_admin, user.id, api_key_id=row.id, user_uid=user.uid)
            return principal, user
        uid, sid = self._session_claims(token)
        live = session.get(UserSession, sid)
        if live is None or live.expires_at < time.time():
            raise AuthenticationFailed(
                "This session has ended (signed out or revoked); sign in again.", "session_ended"
            )
        user = self._active_user(session, live.user_id)
        if not secrets.compare_digest(user.uid, uid):
            raise AuthenticationFailed("Incorrect API key provided.", "invalid_api_key")
        return Principal("session", user.is_admin, user.id, user_uid=user.uid, session_id=sid), user

    @staticmethod
    def _active_user(session: Session, user_id: int) -> User:
        user = session.get(User, user_id)
        if user is None:
            raise AuthenticationFailed("The account for this credential no longer exists.", "invalid_api_key")
        if not user.is_approved:
            raise AuthenticationFailed("This account is waiting for an administrator's approval.", "not_approved")
        return user

    def has_users(self) -> bool:
        with Session(self.db) as session:
            return session.exec(select(User.id).limit(1)).first() is not None
