"""Migration 0003 on a database of the previous version: usernames that differ only by case are told apart, users
get uids, ids already named by the audit log are never handed out again, and older stored responses of a server
with accounts become admins' only. And back down to 0002."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from mlx_manager.db.migrate import downgrade, upgrade

USER = (
    "INSERT INTO users (id, username, password_hash, is_admin, is_approved, created_at) VALUES (:i, :n, 'h', 0, 1, 0)"
)
AUDIT = (
    "INSERT INTO audit_log (time, request_id, user_id, api_key_id, method, endpoint, model, status,"
    " prompt_tokens, completion_tokens, latency_ms, backend) VALUES (0, '', :u, :k, '', '', '', 0, 0, 0, 0, '')"
)


def test_upgrading_keeps_users_apart_by_case_and_never_reuses_their_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0002")
    engine = create_engine(url)
    with engine.begin() as conn:
        for user_id, name in [(1, "Alice"), (2, "alice"), (3, "bob")]:
            conn.execute(text(USER), {"i": user_id, "n": name})
        conn.execute(text(AUDIT), {"u": 9, "k": 4})  # user 9 and key 4 were deleted before the upgrade
        conn.execute(
            text(
                "INSERT INTO responses (id, created_at, model, input_items, response) VALUES ('r1', 1, 'm', '[]', '{}')"
            )
        )
    upgrade(url)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT id, username, uid FROM users ORDER BY id")).all()
        assert [(i, n) for i, n, _ in rows] == [(1, "Alice"), (2, "alice-2"), (3, "bob")]
        assert len({uid for _, _, uid in rows}) == 3 and all(len(uid) >= 16 for _, _, uid in rows)
        conn.execute(
            text(
                "INSERT INTO users (username, uid, password_hash, is_admin, is_approved, created_at)"
                " VALUES ('carol', 'u-carol', 'h', 0, 1, 0)"
            )
        )
        assert conn.execute(text("SELECT id FROM users WHERE username = 'carol'")).scalar() == 10
        conn.execute(
            text("INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at) VALUES (1, 'k', 'p', 'h', 0)")
        )
        assert conn.execute(text("SELECT id FROM api_keys")).scalar() == 5
        assert conn.execute(text("SELECT owner FROM responses")).scalar() == "legacy"
    with engine.connect() as conn, pytest.raises(IntegrityError, match="UNIQUE"):
        conn.execute(
            text(
                "INSERT INTO users (username, uid, password_hash, is_admin, is_approved, created_at)"
                " VALUES ('CAROL', 'u-2', 'h', 0, 1, 0)"
            )
        )
    downgrade(url, "0002")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 4
    upgrade(url)
