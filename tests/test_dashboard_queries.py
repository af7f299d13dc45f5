"""What the portfolio reads: each figure in one statement for all the cities shown, the weeks of the
momentum line counted to the second, and the next session remembered only while it is still the next."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from bot import admin
from store import dashboard, views
from store.models import Blocker
from tests.conftest import NOW, TestBot
from web import portfolio


@contextmanager
def statements(bot: TestBot) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(bot.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(bot.engine, "before_cursor_execute", count)


def add_cities(bot: TestBot, count: int) -> list[int]:
    with bot.store() as store:
        ids = []
        for n in range(count):
            city = admin.add_city(store, f"extra-{n:02d}", f"Extra {n:02d}", "Asia/Tokyo", NOW, "JP")
            admin.add_session(
                store, city.slug, "2026-12-01T09:00", NOW, 60, None, "FREQ=WEEKLY", "2027-03-31"
            )
            store.add_update(city.id, "console:x", "t", "console", NOW)  # type: ignore[arg-type]
            store.add_blocker(Blocker(city_id=city.id, author="console:x", text="b", opened_at=NOW))  # type: ignore[arg-type]
            assert city.id is not None
            ids.append(city.id)
        return ids


def test_the_portfolio_reads_the_same_few_statements_for_3_cities_as_for_30(world: TestBot) -> None:
    extra = add_cities(world, 27)
    with world.store() as store:
        first = [c.id for c in store.cities() if c.slug in ("alpha", "beta", "gamma")]
    counts = []
    for ids in (first, first + extra, None):
        with world.store() as store, statements(world) as seen:
            rows = portfolio.rows(store, ids, NOW, "en")  # type: ignore[arg-type]
        assert len(rows) == (3 if ids == first else 30)
        counts.append(len(seen))
    assert counts[0] == counts[1] == counts[2] <= 8, counts


def test_weeks_are_counted_back_from_now_to_the_second(world: TestBot) -> None:
    week = timedelta(days=7)
    with world.store() as store:
        beta = store.city_by_slug("beta")
        assert beta is not None and beta.id is not None
        for at in (
            NOW - timedelta(seconds=1),
            NOW - week,  # the oldest instant of this week
            NOW - week - timedelta(seconds=1),  # the newest of the week before
            NOW - 11 * week - timedelta(days=3),
            NOW - 12 * week,  # the oldest instant the line shows
            NOW - 12 * week - timedelta(seconds=1),  # too old for it
            NOW + timedelta(seconds=1),  # after now (a clock moved back): not yet
        ):
            store.add_update(beta.id, "console:b1", "w", "console", at)  # type: ignore[arg-type]
        weekly = dashboard.weekly_updates(store, [beta.id], NOW, 12)[beta.id]
        last = dashboard.last_updates(store, [beta.id])[beta.id]
    # The world's own update of Beta was posted at NOW; with the two above, this week has three.
    assert weekly == [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3]
    assert last == NOW + timedelta(seconds=1)


def test_open_blockers_count_and_their_oldest(world: TestBot) -> None:
    with world.store() as store:
        alpha = store.city_by_slug("alpha")
        assert alpha is not None and alpha.id is not None
        store.add_blocker(
            Blocker(city_id=alpha.id, author="console:a1", text="older", opened_at=NOW - timedelta(days=20))
        )
        resolved = store.add_blocker(
            Blocker(city_id=alpha.id, author="console:a1", text="oldest", opened_at=NOW - timedelta(days=40))
        )
        store.resolve_blocker(resolved, "console:coach-a", None, NOW)
        found = dashboard.open_blockers(store, None)
    assert found[alpha.id] == dashboard.OpenBlockers(2, NOW - timedelta(days=20))


def test_a_city_goes_quiet_after_seven_days_without_an_update(world: TestBot) -> None:
    with world.store() as store:
        at_the_line = portfolio.rows(store, None, NOW + timedelta(days=7), "en")
        past_it = portfolio.rows(store, None, NOW + timedelta(days=7, seconds=1), "en")
    assert [r.quiet for r in at_the_line] == [False, False, False]
    assert [r.quiet for r in past_it] == [True, True, True]


def test_the_next_session_is_remembered_only_while_it_is_next(world: TestBot) -> None:
    def next_start(at: Any) -> Any:
        with world.store() as store:
            [alpha] = [r for r in portfolio.rows(store, None, at, "en") if r.city.slug == "alpha"]
        assert alpha.next_session is not None
        return alpha.next_session.start

    first = next_start(NOW)  # Tue 1 Dec 2026, 10:00 in Chicago
    assert first.isoformat() == "2026-12-01T16:00:00+00:00"
    assert next_start(first - timedelta(seconds=1)) == first
    assert next_start(first) == first + timedelta(days=7)  # it has started: the week after
    assert next_start(NOW) == first  # back in time (a test's clock): worked out again
    with world.store() as store:
        admin.skip_day(store, "alpha", "2026-12-01", NOW)  # a holiday changes the series
    assert next_start(NOW) == first + timedelta(days=7)


def test_a_listing_of_thousands_of_cities_is_one_statement_in_order(world: TestBot) -> None:
    # Ids past any IN-list limit (SQLite's was 999) are one parameter: one statement, in one order.
    extra = add_cities(world, 3)
    with world.store() as store:
        ids = [c.id for c in store.cities()] + list(range(10_000, 12_000))
        with statements(world) as seen:
            updates = views.listed_updates(store, ids, NOW - timedelta(days=30), 4)  # type: ignore[arg-type]
            blockers = views.listed_blockers(store, ids, include_resolved=True)  # type: ignore[arg-type]
    assert len(seen) == 2
    assert len(updates) == 4 and {u.city_id for u in updates} >= set(extra)
    assert [(u.created_at, u.id) for u in updates] == sorted(
        ((u.created_at, u.id) for u in updates), reverse=True
    )
    assert [(b.opened_at, b.id) for b in blockers] == sorted((b.opened_at, b.id) for b in blockers)
    assert set(extra) <= {b.city_id for b in blockers}
