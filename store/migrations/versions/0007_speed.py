"""The scheduler's agenda: when a city or a coach next needs planning, reset by the database itself

`cities.plan_at` and `people.plan_at` say when the scheduler next has to look at a city (reminders,
nudges, stale blockers) or a coach (the weekly digest); NULL means at the next pass. The planner sets
them; the triggers below clear them, in the same transaction as any write that could bring something
forward (a session added, moved or skipped, a city's settings, its members, channels and blockers, a
coach's zone or cities), whichever code path makes it. Two outbox indexes: for the pass that drops
expired rows, and for the failed deliveries a coach's status counts per city.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (trigger, table, event, the city or coach whose plan it clears)
_CITY_SETTINGS = (
    "zone, reminder_offsets, nudge_after_days, nudge_hour, working_days, quiet_start, quiet_end, "
    "stale_blocker_days"
)
_CLEARS: list[tuple[str, str, str, str]] = [
    (
        "sessions_added",
        "coaching_sessions",
        "INSERT",
        "UPDATE cities SET plan_at = NULL WHERE id = NEW.city_id",
    ),
    (
        "sessions_changed",
        "coaching_sessions",
        "UPDATE",
        "UPDATE cities SET plan_at = NULL WHERE id IN (OLD.city_id, NEW.city_id)",
    ),
    (
        "sessions_removed",
        "coaching_sessions",
        "DELETE",
        "UPDATE cities SET plan_at = NULL WHERE id = OLD.city_id",
    ),
    (
        "bindings_added",
        "channel_bindings",
        "INSERT",
        "UPDATE cities SET plan_at = NULL WHERE id = NEW.city_id",
    ),
    (
        "bindings_changed",
        "channel_bindings",
        "UPDATE",
        "UPDATE cities SET plan_at = NULL WHERE id IN (OLD.city_id, NEW.city_id)",
    ),
    (
        "bindings_removed",
        "channel_bindings",
        "DELETE",
        "UPDATE cities SET plan_at = NULL WHERE id = OLD.city_id",
    ),
    ("blockers_opened", "blockers", "INSERT", "UPDATE cities SET plan_at = NULL WHERE id = NEW.city_id"),
    ("people_added", "people", "INSERT", "UPDATE cities SET plan_at = NULL WHERE id = NEW.city_id"),
    ("people_removed", "people", "DELETE", "UPDATE cities SET plan_at = NULL WHERE id = OLD.city_id"),
    ("coached_added", "coach_cities", "INSERT", "UPDATE people SET plan_at = NULL WHERE id = NEW.person_id"),
    (
        "coached_removed",
        "coach_cities",
        "DELETE",
        "UPDATE people SET plan_at = NULL WHERE id = OLD.person_id",
    ),
    # A coach with no zone of their own has the zone of their first city by name, which a new city
    # may change for a coach of all cities.
    ("cities_added", "cities", "INSERT", "UPDATE people SET plan_at = NULL WHERE all_cities"),
    ("cities_removed", "cities", "DELETE", "UPDATE people SET plan_at = NULL WHERE all_cities"),
]
_CITY_NAMING = "zone, name"
_PEOPLE_CHANGED = "city_id, role, stopped_at, zone, all_cities"


# On PostgreSQL built CONCURRENTLY, first: the migration runs while the previous release's replicas
# serve (README, "Upgrading"), and a plain build would hold off every write to the outbox until it
# ended. Such a build runs outside the migration's transaction, so it comes before the rest, and is
# made again from the start (an invalid index a failed build left included) if the rest fails.
_OUTBOX_INDEXES = {
    "ix_outbox_status_expires": ["status", "expires_at"],
    "ix_outbox_city_status": ["city_id", "status"],
}


def upgrade() -> None:
    context = op.get_context()
    if context.dialect.name == "postgresql":
        with context.autocommit_block():
            for name, columns in _OUTBOX_INDEXES.items():
                op.drop_index(name, table_name="outbox", postgresql_concurrently=True, if_exists=True)
                op.create_index(name, "outbox", columns, unique=False, postgresql_concurrently=True)
    else:
        with op.batch_alter_table("outbox", schema=None) as batch_op:
            for name, columns in _OUTBOX_INDEXES.items():
                batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("cities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_at", store.types.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_cities_plan_at"), ["plan_at"], unique=False)
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_at", store.types.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_people_plan_at"), ["plan_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for name, table, event, clear in _CLEARS:
        op.execute(f"CREATE TRIGGER agenda_{name} AFTER {event} ON {table} BEGIN {clear}; END")
    # A city's own settings: only when one of them changes, so the planner's own write of plan_at
    # does not clear what it just set.
    op.execute(
        f"CREATE TRIGGER agenda_city_settings AFTER UPDATE OF {_CITY_SETTINGS} ON cities "
        "BEGIN UPDATE cities SET plan_at = NULL WHERE id = NEW.id; END"
    )
    op.execute(
        f"CREATE TRIGGER agenda_city_naming AFTER UPDATE OF {_CITY_NAMING} ON cities "
        "BEGIN UPDATE people SET plan_at = NULL WHERE role = 'coach'; END"
    )
    op.execute(
        f"CREATE TRIGGER agenda_people_changed AFTER UPDATE OF {_PEOPLE_CHANGED} ON people "
        "BEGIN UPDATE cities SET plan_at = NULL WHERE id IN (OLD.city_id, NEW.city_id); "
        "UPDATE people SET plan_at = NULL WHERE id = NEW.id; END"
    )


def _postgres_triggers() -> None:
    for name, table, event, clear in _CLEARS:
        op.execute(
            f"CREATE FUNCTION agenda_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {clear}; RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER agenda_{name} AFTER {event} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION agenda_{name}()"
        )
    # BEFORE UPDATE: the row's own plan is cleared in the row being written.
    op.execute(
        "CREATE FUNCTION agenda_city_settings() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF ({_old_new(_CITY_SETTINGS, 'OLD')}) IS DISTINCT FROM ({_old_new(_CITY_SETTINGS, 'NEW')}) THEN "
        "NEW.plan_at := NULL; END IF; "
        f"IF ({_old_new(_CITY_NAMING, 'OLD')}) IS DISTINCT FROM ({_old_new(_CITY_NAMING, 'NEW')}) THEN "
        "UPDATE people SET plan_at = NULL WHERE role = 'coach'; END IF; "
        "RETURN NEW; END $$"
    )
    # OF: only an update that sets one of these columns (never the planner's own, of plan_at) runs it.
    op.execute(
        f"CREATE TRIGGER agenda_city_settings BEFORE UPDATE OF {_CITY_SETTINGS}, name ON cities "
        "FOR EACH ROW EXECUTE FUNCTION agenda_city_settings()"
    )
    op.execute(
        "CREATE FUNCTION agenda_people_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF ({_old_new(_PEOPLE_CHANGED, 'OLD')}) IS DISTINCT FROM ({_old_new(_PEOPLE_CHANGED, 'NEW')}) THEN "
        "NEW.plan_at := NULL; UPDATE cities SET plan_at = NULL WHERE id IN (OLD.city_id, NEW.city_id); "
        "END IF; RETURN NEW; END $$"
    )
    op.execute(
        f"CREATE TRIGGER agenda_people_changed BEFORE UPDATE OF {_PEOPLE_CHANGED} ON people "
        "FOR EACH ROW EXECUTE FUNCTION agenda_people_changed()"
    )


def _old_new(columns: str, row: str) -> str:
    # JSON has no equality operator in PostgreSQL: compare such columns as text.
    return ", ".join(f"{row}.{c.strip()}::text" for c in columns.split(","))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, _event, _clear in [
        *_CLEARS,
        ("city_settings", "cities", "", ""),
        ("city_naming", "cities", "", ""),
        ("people_changed", "people", "", ""),
    ]:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS agenda_{name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS agenda_{name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS agenda_{name}")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_city_status")
        batch_op.drop_index("ix_outbox_status_expires")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_people_plan_at"))
        batch_op.drop_column("plan_at")
    with op.batch_alter_table("cities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cities_plan_at"))
        batch_op.drop_column("plan_at")
