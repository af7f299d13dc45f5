"""A program calendar loaded (or taken away) puts every city and coach back on the scheduler's next pass

Momentum nudges and weekly digests end with the program calendar in force (its last day, see
scheduler/planner.py). A city or coach planned while no more came waits up to the planner's longest wait;
loading the next cohort's calendar must bring their nudges and digests back at the next pass, so, like
the triggers of 0007, the database clears `plan_at` in the same transaction as the write, whichever code
path makes it.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLEAR = "UPDATE cities SET plan_at = NULL; UPDATE people SET plan_at = NULL WHERE role = 'coach'"
_EVENTS = {"program_loaded": "INSERT", "program_removed": "DELETE"}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event in _EVENTS.items():
        if postgres:
            # Once a statement: the same for every row it writes.
            op.execute(
                f"CREATE FUNCTION agenda_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {_CLEAR}; RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER agenda_{name} AFTER {event} ON program_calendars "
                f"FOR EACH STATEMENT EXECUTE FUNCTION agenda_{name}()"
            )
        else:
            op.execute(f"CREATE TRIGGER agenda_{name} AFTER {event} ON program_calendars BEGIN {_CLEAR}; END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _EVENTS:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS agenda_{name} ON program_calendars")
            op.execute(f"DROP FUNCTION IF EXISTS agenda_{name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS agenda_{name}")
