"""batch_files and batches: the OpenAI Files and Batch APIs

0006 after 0005, 2026-12-03
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from mlx_manager.db.migrations.tables import create, optional, required

revision, down_revision = "0006", "0005"

Int, Str, Json = sa.Integer, sqlmodel.AutoString, sa.JSON


def upgrade() -> None:
    create(
        "batch_files",
        *required(id=Str),
        *optional(owner=Str),
        *required(filename=Str, purpose=Str, bytes=Int, created_at=Int),
    )
    op.create_index("ix_batch_files_owner", "batch_files", ["owner"])
    op.create_index("ix_batch_files_created_at", "batch_files", ["created_at"])
    create(
        "batches",
        *required(id=Str),
        *optional(owner=Str),
        *required(endpoint=Str, input_file_id=Str, completion_window=Str, status=Str),
        *optional(output_file_id=Str, error_file_id=Str, errors=Json),
        *required(request_total=Int, request_completed=Int, request_failed=Int),
        *optional(metadata=Json),
        *required(created_at=Int),
        *optional(in_progress_at=Int, finalizing_at=Int, completed_at=Int, failed_at=Int, expires_at=Int),
        *optional(cancelling_at=Int, cancelled_at=Int),
    )
    op.create_index("ix_batches_owner", "batches", ["owner"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_created_at", "batches", ["created_at"])


def downgrade() -> None:
    op.drop_table("batches")
    op.drop_table("batch_files")
