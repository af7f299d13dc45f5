"""`opt_outs`: a `stop` kept for someone taken off the roster, so that adding them back (to another
city, as a coach, through a join code) does not turn their reminders on again.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("identity", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("stopped_at", store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("identity"),
    )


def downgrade() -> None:
    op.drop_table("opt_outs")
