"""`ix_outbox_replies_waiting`: the replies still to go, a partial index, so a claim takes them before
whatever fell due earlier (a burst of reminders) without reading past those. Its columns repeat its
condition so that SQLite, which keeps no statistics here, prefers it to `ix_outbox_status_next`.

On PostgreSQL it is built CONCURRENTLY: the migration runs while the previous release's replicas serve
(README, "Upgrading"), and a plain build would hold off every write to the outbox until it ended.

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
NAME = "ix_outbox_replies_waiting"
COLUMNS = ["kind", "status", "next_attempt_at"]


def upgrade() -> None:
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.create_index(NAME, "outbox", COLUMNS, unique=False, sqlite_where=sa.text(REPLY_WAITING))
        return
    with context.autocommit_block():
        # A build that failed half way leaves an invalid index of that name behind: built again.
        op.drop_index(NAME, table_name="outbox", postgresql_concurrently=True, if_exists=True)
        op.create_index(
            NAME,
            "outbox",
            COLUMNS,
            unique=False,
            postgresql_where=sa.text(REPLY_WAITING),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index(NAME, table_name="outbox")
