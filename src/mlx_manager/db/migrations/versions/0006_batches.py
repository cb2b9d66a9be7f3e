"""batch_files and batches: the OpenAI Files and Batch APIs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_files",
        sa.Column("id", sqlmodel.AutoString(), nullable=False),
        sa.Column("owner", sqlmodel.AutoString(), nullable=True),
        sa.Column("filename", sqlmodel.AutoString(), nullable=False),
        sa.Column("purpose", sqlmodel.AutoString(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batch_files_owner", "batch_files", ["owner"])
    op.create_index("ix_batch_files_created_at", "batch_files", ["created_at"])
    op.create_table(
        "batches",
        sa.Column("id", sqlmodel.AutoString(), nullable=False),
        sa.Column("owner", sqlmodel.AutoString(), nullable=True),
        sa.Column("endpoint", sqlmodel.AutoString(), nullable=False),
        sa.Column("input_file_id", sqlmodel.AutoString(), nullable=False),
        sa.Column("completion_window", sqlmodel.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.AutoString(), nullable=False),
        sa.Column("output_file_id", sqlmodel.AutoString(), nullable=True),
        sa.Column("error_file_id", sqlmodel.AutoString(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("request_total", sa.Integer(), nullable=False),
        sa.Column("request_completed", sa.Integer(), nullable=False),
        sa.Column("request_failed", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("in_progress_at", sa.Integer(), nullable=True),
        sa.Column("finalizing_at", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.Column("failed_at", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("cancelling_at", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batches_owner", "batches", ["owner"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_created_at", "batches", ["created_at"])


def downgrade() -> None:
    op.drop_table("batches")
    op.drop_table("batch_files")
