"""Who is calling: argon2 passwords, HS256 session tokens (JWT) and per-user API keys (stored as SHA-256).

Three credentials are accepted, all as `Authorization: Bearer …` or `x-api-key`: the server's configured key
(`--api-key`, admin rights, no user), a user's API key (`mlxm-…`) and a UI session token. Every check compares
hashes or HMACs in constant time. The calls that read the database block: run them off the event loop.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from functools import cache
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine
from sqlmodel import Session, select

from mlx_manager.db.models import ApiKey, User
from mlx_manager.manager.errors import AuthenticationFailed

KEY_PREFIX = "mlxm-"
DISPLAY_PREFIX_CHARS = 12  # "mlxm-" and 7 random characters: enough to tell keys apart, far too few to guess
SESSION_SECONDS = 7 * 24 * 3600
_ALGORITHM = "HS256"


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; an unknown user is checked against a dummy hash so timing tells nothing."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
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


class Authenticator:
    def __init__(self, db: Engine, secret: str, server_key: str | None) -> None:
        self.db = db
        self._secret = secret
        self.server_key = server_key

    # --- sessions ---------------------------------------------------------------------------

    def issue_session(self, user: User, now: float | None = None) -> tuple[str, float]:
        """A signed session token for the user and when it expires (epoch seconds)."""
        issued = int(now if now is not None else time.time())
        expires = issued + SESSION_SECONDS
        claims = {"sub": str(user.id), "iat": issued, "exp": expires, "typ": "session"}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM), float(expires)

    def _session_user_id(self, token: str) -> int:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("Your session has expired; sign in again.", "session_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("Incorrect API key provided.", "invalid_api_key") from exc
        sub = claims.get("sub")
        if claims.get("typ") != "session" or not isinstance(sub, str) or not sub.isdigit():
            raise AuthenticationFailed("Incorrect API key provided.", "invalid_api_key")
        return int(sub)

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
            return Principal(via="api_key", is_admin=user.is_admin, user_id=user.id, api_key_id=row.id), user
        user = self._active_user(session, self._session_user_id(token))
        return Principal(via="session", is_admin=user.is_admin, user_id=user.id), user

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
