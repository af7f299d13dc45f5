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


# Not in batch mode: on SQLite that may copy the table, and dropping an index never needs it.
def upgrade() -> None:
    op.drop_index("ix_outbox_city_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_city_id", "outbox", ["city_id"], unique=False)
