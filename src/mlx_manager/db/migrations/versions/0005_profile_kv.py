"""profiles: kv_bits and kv_group_size (KV-cache quantization per profile)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kv_bits", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("kv_group_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_column("kv_group_size")
        batch_op.drop_column("kv_bits")
