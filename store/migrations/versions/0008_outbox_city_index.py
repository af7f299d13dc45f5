"""Drop `ix_outbox_city_id`: `ix_outbox_city_status` (city_id, status) begins with the same column and
serves every lookup by city, so the older index only made each outbox insert keep one more index.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Not in batch mode: on SQLite that may copy the table, and dropping an index never needs it. On
# PostgreSQL dropped CONCURRENTLY: the previous release's replicas are serving meanwhile (README,
# "Upgrading"), and a plain drop would wait for their open transactions with every write to the outbox
# queued behind it.
def upgrade() -> None:
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.drop_index("ix_outbox_city_id", table_name="outbox")
        return
    with context.autocommit_block():
        op.drop_index("ix_outbox_city_id", table_name="outbox", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    op.create_index("ix_outbox_city_id", "outbox", ["city_id"], unique=False)
