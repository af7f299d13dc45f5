"""inbox before acknowledgement; reply context on the outbox

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inbox = op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("message", sa.JSON(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "message_id", name="uq_inbox_platform_message"),
    )
    op.create_index("ix_inbox_status_next", "inbox", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_inbox_received_at"), "inbox", ["received_at"])
    # Ids seen before stay seen: a platform retry after the upgrade is still dropped.
    seen = sa.table(
        "processed_messages",
        sa.column("platform", sa.String),
        sa.column("message_id", sa.String),
        sa.column("received_at", sa.DateTime),
    )
    rows = op.get_bind().execute(sa.select(seen.c.platform, seen.c.message_id, seen.c.received_at))
    op.bulk_insert(
        inbox,
        [
            {
                "platform": platform,
                "message_id": message_id,
                "status": "done",
                "attempts": 1,
                "next_attempt_at": received_at,
                "received_at": received_at,
                "handled_at": received_at,
            }
            for platform, message_id, received_at in rows
        ],
    )
    op.drop_table("processed_messages")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("context")
    op.create_table(
        "processed_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "message_id", name="uq_processed_platform_message"),
    )
    op.create_index(op.f("ix_processed_messages_received_at"), "processed_messages", ["received_at"])
    op.execute(
        "INSERT INTO processed_messages (platform, message_id, received_at) "
        "SELECT platform, message_id, received_at FROM inbox"
    )
    op.drop_index(op.f("ix_inbox_received_at"), table_name="inbox")
    op.drop_index("ix_inbox_status_next", table_name="inbox")
    op.drop_table("inbox")
