"""`ix_outbox_replies_waiting`: the replies still to go, a partial index, so a claim takes them before
whatever fell due earlier (a burst of reminders) without reading past those. Its columns repeat its
condition so that SQLite, which keeps no statistics here, prefers it to `ix_outbox_status_next`.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in store.models, where the claim uses the same text: a migration keeps its own copy.
REPLY_WAITING = "kind = 'reply' AND status IN ('pending', 'sending')"


def upgrade() -> None:
    op.create_index(
        "ix_outbox_replies_waiting",
        "outbox",
        ["kind", "status", "next_attempt_at"],
        unique=False,
        sqlite_where=sa.text(REPLY_WAITING),
        postgresql_where=sa.text(REPLY_WAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_replies_waiting", table_name="outbox")
