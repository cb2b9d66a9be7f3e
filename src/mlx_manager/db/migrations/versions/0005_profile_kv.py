"""profiles: kv_bits and kv_group_size (KV-cache quantization per profile)

0005 after 0004, 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0005", "0004"


def upgrade() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kv_bits", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("kv_group_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_column("kv_group_size")
        batch_op.drop_column("kv_bits")
