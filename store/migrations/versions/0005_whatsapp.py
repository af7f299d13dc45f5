"""WhatsApp: join codes, `stop`, delivery status of sent messages

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "join_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["city_id"], ["cities.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index(op.f("ix_join_codes_city_id"), "join_codes", ["city_id"])
    op.create_table(
        "outbox_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("platform_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "platform_id", name="uq_receipts_platform_id"),
    )
    op.create_index(op.f("ix_outbox_receipts_outbox_id"), "outbox_receipts", ["outbox_id"])
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stopped_at", store.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("delivery_code", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("delivery_code")
        batch_op.drop_column("delivery")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("stopped_at")
    op.drop_index(op.f("ix_outbox_receipts_outbox_id"), table_name="outbox_receipts")
    op.drop_table("outbox_receipts")
    op.drop_index(op.f("ix_join_codes_city_id"), table_name="join_codes")
    op.drop_table("join_codes")
