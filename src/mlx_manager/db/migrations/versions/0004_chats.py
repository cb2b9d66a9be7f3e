"""web UI chats: chats and their messages, per owner

0004 after 0003, 2026-11-24
"""

import sqlalchemy as sa

from mlx_manager.db.migrations.tables import create, drop, optional, required

revision, down_revision = "0004", "0003"

Int, Float, Str, Json = sa.Integer, sa.Float, sa.String, sa.JSON
CHAT_INDEXES = ("owner", "updated_at")


def upgrade() -> None:
    create(
        "chats",
        *required(id=Int),
        *optional(owner=Str),
        *required(title=Str, model=Str, options=Json, created_at=Float, updated_at=Float),
        indexes=CHAT_INDEXES,
        sqlite_autoincrement=True,
    )
    create(
        "chat_messages",
        *required(id=Int, chat_id=Int, role=Str, content=Str, images=Json),
        *optional(reasoning=Str, tool_calls=Json),
        *required(status=Str),
        *optional(error=Str, model=Str),
        *required(params=Json),
        *optional(finish_reason=Str, prompt_tokens=Int, completion_tokens=Int, ttft_ms=Float, decode_ms=Float),
        *required(created_at=Float, updated_at=Float),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.id"]),
        indexes=["chat_id"],
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    drop("chat_messages", ["chat_id"])
    drop("chats", CHAT_INDEXES)
