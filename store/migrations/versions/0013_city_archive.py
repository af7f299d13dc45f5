"""`cities.archived_at`: a city that has left the program (its cohort over, or it withdrew). Nothing is
planned for it or about it any more, and coaches' views of all their cities leave it out; its history
stays (`cda-bot city archive`, `city restore`).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Altered in place, never through a copy of the table (SQLite's batch mode), which would leave the
# scheduler's triggers on it behind (0007).
def upgrade() -> None:
    op.add_column("cities", sa.Column("archived_at", store.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE cities DROP COLUMN archived_at")
