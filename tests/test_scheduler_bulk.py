"""The scheduler's shortcuts give what the slow ways give: a plain daily or weekly series counted
instead of generated, and outbox rows written in bulk (COPY on PostgreSQL) leaving out taken keys."""

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dateutil.rrule import rrulestr
from sqlalchemy import Engine, select

from bot import admin
from bot.calendar import sessions
from store import agenda, bulk
from store.models import OutboxMessage
from store.repo import open_store

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class _Session:
    rrule: str
    start_local: datetime
    until_local: datetime | None
    exdates: list[str] = field(default_factory=list)
    id: int = 1
    title: str = "Coaching session"
    duration_min: int = 60


def test_a_series_starts_where_dateutil_says_it_does() -> None:
    rng = random.Random(7)
    rules = [
        *("FREQ=WEEKLY", "FREQ=WEEKLY;COUNT=30", "FREQ=DAILY;INTERVAL=3", "freq=weekly;count=10"),
        *("FREQ=WEEKLY;INTERVAL=2;UNTIL=20270115T000000Z", "FREQ=DAILY;UNTIL=20261201", "FREQ=DAILY;COUNT=1"),
        *("FREQ=WEEKLY;WKST=SU;INTERVAL=3", "FREQ=WEEKLY;BYDAY=MO,WE,FR", "FREQ=MONTHLY;BYDAY=1MO"),
    ]
    for rule in rules:
        for _ in range(10):
            start = datetime(
                2026, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), 15 * rng.randint(0, 3)
            )
            bounded = "COUNT" in rule.upper() or rng.random() < 0.5  # an end of its own, or none
            until = None if bounded else start + timedelta(days=rng.randint(-2, 300))
            expected = rrulestr(rule, dtstart=start, ignoretz=True)
            if until is not None:
                expected = expected.replace(until=until)
            starts = list(itertools.islice(expected, 1000))
            skipped = {starts[len(starts) // 2]} if starts else set()
            session = _Session(rule, start, until, [d.isoformat() for d in skipped])
            for _ in range(10):
                after = start + timedelta(hours=rng.randint(-50, 24 * 320))
                found = list(itertools.islice(sessions._local_starts(session, after), 3))
                assert found == [d for d in starts if d >= after and d not in skipped][:3], (
                    rule,
                    start,
                    after,
                )
                before = [d for d in starts if d < after and d not in skipped]
                last = sessions.last_before([session], "UTC", after.replace(tzinfo=UTC))
                assert (last.start.replace(tzinfo=None) if last else None) == (before[-1] if before else None)


def _row(key: str, created: datetime, postgres: bool) -> agenda.OutboxRow:
    at = bulk.value(created, postgres, {})
    return (key, "console:ana", "nudge", None, '{"text": "hi"}', "pending", 0, at, at, None, None, at)


def test_rows_whose_key_is_taken_are_left_out(engine: Engine) -> None:
    postgres = engine.dialect.name == "postgresql"
    with open_store(engine) as store:
        admin.add_city(store, "home", "Home", "UTC", START, None, "implementation")
        assert agenda.insert_outbox(store, [_row("a", START, postgres), _row("b", START, postgres)]) == {
            "a",
            "b",
        }
    later = START + timedelta(minutes=1)
    with open_store(engine) as store:
        # A second pass that read before the first wrote: only its new row is its own.
        written = agenda.insert_outbox(store, [_row(k, later, postgres) for k in ("b", "c", "d")])
        assert written == {"c", "d"}
        # The transaction is still usable after the bulk write gave way.
        assert agenda.existing_keys(store, ["a", "b", "c", "d", "e"]) == {"a", "b", "c", "d"}
    with open_store(engine) as store:
        rows = store.session.execute(select(OutboxMessage.key, OutboxMessage.created_at)).all()
    assert sorted(rows) == [("a", START), ("b", START), ("c", later), ("d", later)]
