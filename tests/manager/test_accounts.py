"""Users, API keys and the authenticator against a real SQLite file: first-user admin, approval, last-admin
guard, keys stored as hashes and revocable, session tokens signed and expiring."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jwt
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mlx_manager.db.models import ApiKey, Setting
from mlx_manager.db.session import open_database
from mlx_manager.manager import api_keys, auth, users
from mlx_manager.manager.auth import Authenticator
from mlx_manager.manager.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied
from mlx_manager.manager.settings_store import JWT_SECRET_KEY, server_secret


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return open_database(tmp_path / "db.sqlite")


def _session(db: Engine) -> Session:
    return Session(db, expire_on_commit=False)


def test_the_first_user_is_an_approved_admin_and_later_ones_wait_for_approval(db: Engine) -> None:
    with _session(db) as s:
        first = users.register(s, "alice", "correct horse")
        second = users.register(s, "bob", "battery staple")
        assert (first.is_admin, first.is_approved) == (True, True)
        assert (second.is_admin, second.is_approved) == (False, False)
        with pytest.raises(PermissionDenied, match="approval"):
            users.login(s, "bob", "battery staple")
        users.approve(s, second.id or 0)
        assert users.login(s, "bob", "battery staple").last_login_at is not None


def test_passwords_are_stored_as_argon2_hashes_and_wrong_ones_fail_alike(db: Engine) -> None:
    with _session(db) as s:
        user = users.register(s, "alice", "correct horse")
        assert user.password_hash.startswith("$argon2id$") and "correct horse" not in user.password_hash
        for name, password in (("alice", "wrong password"), ("nobody", "correct horse")):
            with pytest.raises(AuthenticationFailed, match="Incorrect username or password"):
                users.login(s, name, password)


def test_a_taken_username_is_a_conflict(db: Engine) -> None:
    with _session(db) as s:
        users.register(s, "alice", "correct horse")
        with pytest.raises(Conflict):
            users.register(s, "alice", "another one")


def test_the_last_admin_cannot_be_deleted_demoted_or_unapproved(db: Engine) -> None:
    with _session(db) as s:
        admin = users.register(s, "alice", "correct horse")
        other = users.register(s, "bob", "battery staple")
        assert admin.id is not None and other.id is not None
        for change in ({"is_admin": False}, {"is_approved": False}):
            with pytest.raises(Conflict, match="last administrator"):
                users.update(s, admin.id, **change)
        with pytest.raises(Conflict):
            users.delete_user(s, admin.id)
        users.update(s, other.id, is_admin=True, is_approved=True)
        users.delete_user(s, admin.id)  # another admin is left now
        assert [u.username for u in users.list_users(s)] == ["bob"]
        with pytest.raises(NotFound):
            users.get_user(s, admin.id)


def test_deleting_a_user_removes_their_keys(db: Engine) -> None:
    with _session(db) as s:
        users.register(s, "alice", "correct horse")
        bob = users.approve(s, users.register(s, "bob", "battery staple").id or 0)
        api_keys.create(s, bob, "laptop")
        users.delete_user(s, bob.id or 0)
        assert s.exec(select(ApiKey)).all() == []


def test_an_api_key_is_shown_once_and_stored_as_its_sha256(db: Engine) -> None:
    with _session(db) as s:
        alice = users.register(s, "alice", "correct horse")
        row, key = api_keys.create(s, alice, "laptop")
    assert key.startswith("mlxm-") and len(key) > 40
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest() and row.prefix == key[:12]
    raw = b"".join(p.read_bytes() for p in Path(str(db.url.database)).parent.glob("db.sqlite*"))
    assert key.encode() not in raw


def test_keys_authenticate_until_revoked_and_only_their_owner_or_an_admin_revokes(db: Engine) -> None:
    authn = Authenticator(db, server_secret(db), None)
    with _session(db) as s:
        alice = users.register(s, "alice", "correct horse")
        bob = users.approve(s, users.register(s, "bob", "battery staple").id or 0)
        row, key = api_keys.create(s, bob, "laptop")
        principal = authn.authenticate(key)
        assert (principal.via, principal.user_id, principal.api_key_id, principal.is_admin) == (
            "api_key", bob.id, row.id, False)  # fmt: skip
        carol = users.register(s, "carol", "another password")
        with pytest.raises(NotFound):
            api_keys.revoke(s, row.id or 0, carol)
        api_keys.revoke(s, row.id or 0, alice)  # an admin may
        assert [k.revoked_at is not None for k in api_keys.list_keys(s, bob.id)] == [True]
    with pytest.raises(AuthenticationFailed, match="revoked"):
        authn.authenticate(key)
    with pytest.raises(AuthenticationFailed, match="Incorrect"):
        authn.authenticate(key[:-2] + "xx")


def test_session_tokens_are_signed_with_the_stored_secret_and_expire(db: Engine) -> None:
    secret = server_secret(db)
    assert server_secret(db) == secret  # generated once, then read back
    with _session(db) as s:
        assert s.get(Setting, JWT_SECRET_KEY) is not None
        alice = users.register(s, "alice", "correct horse")
    authn = Authenticator(db, secret, None)
    with _session(db) as s:
        token, expires = authn.issue_session(s, alice)
        old, _ = authn.issue_session(s, alice, now=1_000_000)
    assert authn.authenticate(token).user_id == alice.id
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert expires - claims["iat"] == auth.SESSION_SECONDS and claims["sub"] == alice.uid  # the uid, not the row id
    with pytest.raises(AuthenticationFailed, match="expired"):
        authn.authenticate(old)
    forged = jwt.encode({"sub": alice.uid, "sid": "x", "exp": 2**40, "typ": "session"}, "x" * 64, algorithm="HS256")
    with pytest.raises(AuthenticationFailed, match="Incorrect"):
        authn.authenticate(forged)


def test_the_server_key_is_an_admin_without_a_user(db: Engine) -> None:
    authn = Authenticator(db, server_secret(db), "sk-server")
    principal = authn.authenticate("sk-server")
    assert principal.is_admin and principal.user_id is None and principal.via == "server_key"


def test_an_unapproved_users_key_does_not_work(db: Engine) -> None:
    authn = Authenticator(db, server_secret(db), None)
    with _session(db) as s:
        users.register(s, "alice", "correct horse")
        bob = users.approve(s, users.register(s, "bob", "battery staple").id or 0)
        _, key = api_keys.create(s, bob, "laptop")
        users.update(s, bob.id or 0, is_approved=False)
    with pytest.raises(AuthenticationFailed, match="approval"):
        authn.authenticate(key)
