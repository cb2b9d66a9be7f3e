"""users, api keys, audit log, downloads, profiles, settings, credentials, backends, routing rules

0002 after 0001, 2026-11-22
"""

import sqlalchemy as sa

from mlx_manager.db.migrations.tables import create, drop, optional, required

revision, down_revision = "0002", "0001"

Int, Float, Str, Bool, Json = sa.Integer, sa.Float, sa.String, sa.Boolean, sa.JSON

AUDIT_INDEXES = ("model", "time", "user_id")
API_KEY_INDEXES = ("key_hash", "user_id")  # unique, then not


def upgrade() -> None:
    create(
        "audit_log",
        *required(id=Int, time=Float, request_id=Str),
        *optional(user_id=Int, api_key_id=Int),
        *required(method=Str, endpoint=Str, model=Str, status=Int, prompt_tokens=Int, completion_tokens=Int),
        *required(latency_ms=Float, backend=Str),
        indexes=AUDIT_INDEXES,
    )
    create(
        "credentials",
        *required(id=Int, name=Str, provider=Str, secret_encrypted=Str, created_at=Float),
        unique=["name"],
    )
    create(
        "downloads",
        *required(id=Str, repo_id=Str, revision=Str, status=Str, total_bytes=Int, downloaded_bytes=Int),
        *optional(error=Str),
        *required(files=Json, created_at=Float, updated_at=Float),
        indexes=["repo_id"],
    )
    create(
        "profiles",
        *required(id=Int, name=Str, model=Str),
        *optional(temperature=Float, top_p=Float, max_tokens=Int, system_prompt=Str, thinking=Bool),
        *optional(context_length=Int),
        *required(created_at=Float, updated_at=Float),
        unique=["name"],
    )
    create(
        "routing_rules",
        *required(id=Int, priority=Int, pattern=Str, match_type=Str, backend_ids=Json),
        *optional(remote_model=Str),
        *required(enabled=Bool),
        indexes=["priority"],
    )
    create("settings", *required(key=Str), *optional(value=Json), key="key")
    create(
        "users",
        *required(id=Int, username=Str, password_hash=Str, is_admin=Bool, is_approved=Bool, created_at=Float),
        *optional(last_login_at=Float),
        unique=["username"],
    )
    create(
        "api_keys",
        *required(id=Int, user_id=Int, name=Str, prefix=Str, key_hash=Str, created_at=Float),
        *optional(last_used_at=Float, revoked_at=Float),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        unique=["key_hash"],
        indexes=["user_id"],
    )
    create(
        "backends",
        *required(id=Int, name=Str, kind=Str),
        *optional(base_url=Str, credential_id=Int),
        *required(timeout_seconds=Float, enabled=Bool),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"]),
        unique=["name"],
    )


def downgrade() -> None:
    drop("backends", ["name"])
    drop("api_keys", API_KEY_INDEXES)
    drop("users", ["username"])
    drop("settings")
    drop("routing_rules", ["priority"])
    drop("profiles", ["name"])
    drop("downloads", ["repo_id"])
    drop("credentials", ["name"])
    drop("audit_log", AUDIT_INDEXES)
