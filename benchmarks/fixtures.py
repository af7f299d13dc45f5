"""Generated programs for the benchmarks, written in bulk (executemany on SQLite, COPY on PostgreSQL).

A program is cities with members, coaches (one of every city, the rest of ten cities each), a weekly
session per city, half of the cities bound to a Slack channel, and updates and blockers spread over the
months before `NOW`. Every tenth city has gone quiet (no update in the last ten days), so the views
and the scheduler have something to say about it. The same arguments give the same rows.
"""

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from store.db import upgrade

NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # a Monday afternoon: reminders and digests are due
ZONES = ["America/Chicago", "America/Bogota", "America/Sao_Paulo", "Europe/London", "America/Santiago"]
LANGUAGES = ("en", "es", "pt")
MEMBERS_PER_CITY = 3
CITIES_PER_COACH = 10
LEAD = "console:lead"  # the coach of every city
# Bumped whenever the rows below change, so a cached program is built again.
VERSION = 1


@dataclass(frozen=True)
class Program:
    cities: int
    updates: int
    blockers: int
    open_share: float = 0.2  # of blockers, still open
    days: int = 180  # updates and blockers are spread over the days before NOW

    @property
    def name(self) -> str:
        return f"v{VERSION}-{self.cities}c-{self.updates}u-{self.blockers}b"


def slug(n: int) -> str:
    return f"city-{n:05d}"


def member(n: int, m: int = 0) -> str:
    return f"console:{slug(n)}-m{m}"


def coach(c: int) -> str:
    return f"console:coach-{c:04d}"


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _rows(program: Program) -> dict[str, tuple[list[str], Iterable[Sequence[Any]]]]:
    """Every table's columns and rows; ids are given so the tables refer to each other."""
    rng = random.Random(program.name)
    created = _naive(NOW - timedelta(days=program.days + 20))
    n = program.cities
    cities = [
        (
            i,
            slug(i),
            f"City {i:05d}",
            ZONES[i % len(ZONES)],
            None,
            LANGUAGES[i % len(LANGUAGES)],
            "implementation" if i % 4 else "capacity",
            "[1440, 60]",
            7,
            10,
            "[0, 1, 2, 3, 4]",
            20,
            8,
            14,
            created,
        )
        for i in range(1, n + 1)
    ]
    people: list[Sequence[Any]] = []
    person_id = 0
    for i in range(1, n + 1):
        for m in range(MEMBERS_PER_CITY):
            person_id += 1
            people.append(
                (person_id, member(i, m), f"Member {m} of {i}", "member", i, False, None, None, created)
            )
    coach_links = []
    person_id += 1
    people.append((person_id, LEAD, "Lead coach", "coach", None, True, "America/Chicago", None, created))
    for c in range((n + CITIES_PER_COACH - 1) // CITIES_PER_COACH):
        person_id += 1
        people.append((person_id, coach(c), f"Coach {c}", "coach", None, False, None, None, created))
        first = c * CITIES_PER_COACH + 1
        coach_links += [(person_id, i) for i in range(first, min(first + CITIES_PER_COACH, n + 1))]
    bindings = [(i, f"slack:T0001:C{i:06d}", i, created) for i in range(1, n + 1) if i % 2 == 0]
    # One weekly session per city, on varied weekdays and times, from the start of the program.
    sessions = [
        (
            i,
            i,
            "Coaching session",
            datetime(2026, 6, 1 + i % 7, 8 + i % 9, 15 * (i % 4)),
            60,
            "FREQ=WEEKLY",
            datetime(2027, 3, 31),
            "[]",
            None,
            created,
        )
        for i in range(1, n + 1)
    ]
    span = program.days * 86400

    def when(city: int) -> datetime:
        # A tenth of the cities went quiet ten days ago.
        quiet = 10 * 86400 if city % 10 == 0 else 0
        return _naive(NOW) - timedelta(seconds=quiet + rng.randrange(span - quiet))

    def updates() -> Iterable[Sequence[Any]]:
        for u in range(1, program.updates + 1):
            city = rng.randrange(1, n + 1)
            yield (
                u,
                city,
                member(city, u % MEMBERS_PER_CITY),
                f"Update {u}: tested the intake form",
                "console",
                when(city),
            )

    def blockers() -> Iterable[Sequence[Any]]:
        for b in range(1, program.blockers + 1):
            city = rng.randrange(1, n + 1)
            opened = when(city)
            if rng.random() < program.open_share:
                yield (
                    b,
                    city,
                    member(city),
                    f"Blocker {b}: waiting on data",
                    "open",
                    opened,
                    None,
                    None,
                    None,
                )
            else:
                resolved = opened + timedelta(days=rng.randrange(1, 20))
                yield (
                    b,
                    city,
                    member(city),
                    f"Blocker {b}: waiting on data",
                    "resolved",
                    opened,
                    min(resolved, _naive(NOW)),
                    LEAD,
                    "done",
                )

    return {
        "cities": (
            "id slug name zone country language pathway reminder_offsets nudge_after_days nudge_hour "
            "working_days quiet_start quiet_end stale_blocker_days created_at".split(),
            cities,
        ),
        "people": ("id identity name role city_id all_cities zone stopped_at created_at".split(), people),
        "coach_cities": (["person_id", "city_id"], coach_links),
        "channel_bindings": (["id", "conversation", "city_id", "created_at"], bindings),
        "coaching_sessions": (
            "id city_id title start_local duration_min rrule until_local exdates uid created_at".split(),
            sessions,
        ),
        "updates": (["id", "city_id", "author", "text", "platform", "created_at"], updates()),
        "blockers": (
            "id city_id author text status opened_at resolved_at resolved_by resolution_note".split(),
            blockers(),
        ),
    }


def _sqlite(row: Sequence[Any]) -> tuple[Any, ...]:
    # Instants as SQLAlchemy writes them to SQLite, so that they compare as text with its own.
    return tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)


def _chunks(rows: Iterable[Sequence[Any]], size: int = 20_000) -> Iterable[list[Sequence[Any]]]:
    chunk: list[Sequence[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build(engine: Engine, program: Program) -> None:
    """Migrate an empty database and fill it with `program`, in one go per table."""
    upgrade(engine)
    tables = _rows(program)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        postgres = engine.dialect.name == "postgresql"
        if not postgres:
            # A generated database, built again if lost: no syncing, and the indexes kept in memory.
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-262144")
        for table, (columns, rows) in tables.items():
            names = ", ".join(columns)
            if postgres:
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" for _ in columns)
                for chunk in _chunks(rows):
                    cursor.executemany(
                        f"INSERT INTO {table} ({names}) VALUES ({marks})", [_sqlite(row) for row in chunk]
                    )
        if postgres:
            for table in tables.keys() - {"coach_cities"}:  # COPY gave the ids; the sequences go on after
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table}), 1))"
                )
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_fixture (name VARCHAR(100) PRIMARY KEY, built TEXT)")
        cursor.execute(
            "INSERT INTO bench_fixture (name, built) VALUES (%s, %s)"
            if postgres
            else "INSERT INTO bench_fixture (name, built) VALUES (?, ?)",
            (program.name, json.dumps({"at": datetime.now(UTC).isoformat()})),
        )
        raw.commit()
    finally:
        raw.close()
    analyze(engine)


def analyze(engine: Engine) -> None:
    """Fresh statistics (and, on PostgreSQL, a visibility map for index-only scans), as a database
    that has been running a while has them."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()


def built(engine: Engine, program: Program) -> bool:
    """Whether the database holds `program` already (a cache of an earlier run)."""
    with engine.connect() as connection:
        try:
            found = connection.execute(
                text("SELECT name FROM bench_fixture WHERE name = :name"), {"name": program.name}
            ).first()
        except Exception:
            return False
    return found is not None
