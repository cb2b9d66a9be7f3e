"""accounts round two: user uids, case-insensitive usernames, ids never reused, sessions, response owners

0003 after 0002, 2026-11-23
"""

import logging
import secrets

import sqlalchemy as sa
from alembic import op

from mlx_manager.db.migrations.tables import create, drop, required

revision, down_revision = "0003", "0002"
SESSION_INDEXES = ("user_id", "expires_at")

log = logging.getLogger("alembic.runtime.migration")

# Stored responses made before owners existed, on a server with accounts: only admins may see them.
LEGACY_OWNER = "legacy"


def _rename_case_duplicates(conn: sa.Connection) -> None:
    """`Alice` and `alice` may both exist from before: the later one becomes `alice-<id>` (shown in the log)."""
    rows = conn.execute(sa.text("SELECT id, username FROM users ORDER BY id")).all()
    taken = {name.lower() for _, name in rows}
    seen: set[str] = set()
    for user_id, name in rows:
        if name.lower() not in seen:
            seen.add(name.lower())
            continue
        new = f"{name}-{user_id}"
        while new.lower() in taken:
            new += "-x"
        taken.add(new.lower())
        conn.execute(sa.text("UPDATE users SET username = :n WHERE id = :i"), {"n": new, "i": user_id})
        log.warning("User %s: username %r differs from another only by case; renamed to %r.", user_id, name, new)


def _never_below(conn: sa.Connection, table: str, highest: str) -> None:
    """AUTOINCREMENT starts after the highest id ever seen, audit rows included, not only the ids left."""
    seq = conn.execute(sa.text(highest)).scalar() or 0
    row = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).first()
    if row is None:
        conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"), {"t": table, "s": seq})
    elif row[0] < seq:
        conn.execute(sa.text("UPDATE sqlite_sequence SET seq = :s WHERE name = :t"), {"t": table, "s": seq})


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("users", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(), nullable=True))
    for (user_id,) in conn.execute(sa.text("SELECT id FROM users")).all():
        conn.execute(sa.text("UPDATE users SET uid = :u WHERE id = :i"), {"u": secrets.token_urlsafe(16), "i": user_id})
    _rename_case_duplicates(conn)
    with op.batch_alter_table("users", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("uid", existing_type=sa.String(), nullable=False)
        batch_op.create_index("ix_users_uid", ["uid"], unique=True)
    with op.batch_alter_table("api_keys", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass
    # After the batch copies: they cannot reflect an expression index, and would warn.
    op.create_index("ux_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    _never_below(
        conn, "users", "SELECT max(coalesce((SELECT max(id) FROM users), 0), coalesce(max(user_id), 0)) FROM audit_log"
    )
    _never_below(
        conn,
        "api_keys",
        "SELECT max(coalesce((SELECT max(id) FROM api_keys), 0), coalesce(max(api_key_id), 0)) FROM audit_log",
    )

    create(
        "sessions",
        *required(id=sa.String, user_id=sa.Integer, created_at=sa.Float, expires_at=sa.Float),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        indexes=SESSION_INDEXES,
    )

    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_responses_owner"), ["owner"], unique=False)
    conn.execute(sa.text("UPDATE responses SET owner = :o WHERE EXISTS (SELECT 1 FROM users)"), {"o": LEGACY_OWNER})


def downgrade() -> None:
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_responses_owner"))
        batch_op.drop_column("owner")
    drop("sessions", SESSION_INDEXES)
    op.drop_index("ux_users_username_lower", table_name="users")
    with op.batch_alter_table("users", recreate="always", table_kwargs={"sqlite_autoincrement": False}) as batch_op:
        batch_op.drop_index("ix_users_uid")
        batch_op.drop_column("uid")
    with op.batch_alter_table("api_keys", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
