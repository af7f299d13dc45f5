"""The scheduler's agenda: a pass plans only cities and coaches whose time has come, and any write that
could bring a message forward puts them back on the next pass, whichever code path made it."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bot import admin
from bot.core.clock import FixedClock
from bot.runtime.delivery import Deliverer
from bot.runtime.ratelimit import RateLimiter
from scheduler.planner import LONGEST_WAIT
from scheduler.runner import PassRunner
from store import agenda
from store.models import OutboxMessage, OutboxStatus
from tests.conftest import TestBot

START = datetime(2026, 1, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tick(bot: TestBot, at: datetime) -> list[str]:
    """One pass at `at` (nothing is delivered: no adapter runs); the keys it planned."""
    bot.clock.set(at)
    deliverer = Deliverer(bot.engine, {}, bot.clock, RateLimiter(intervals={}))
    report = asyncio.run(PassRunner(bot.engine, deliverer, FixedClock(at)).run())
    return report.plan.planned


def home(bot: TestBot, zone: str = "America/Chicago") -> None:
    with bot.store() as store:
        admin.add_city(store, "home", "Home", zone, START, None, "implementation")
        admin.add_member(store, "console:ana", "home", START)
        admin.set_city_schedule(store, "home", nudge_after=0)


def kinds(bot: TestBot) -> list[tuple[str, str]]:
    with bot.store() as store:
        return sorted((row.recipient, row.kind) for row in store.session.exec(select(OutboxMessage)))


def test_after_a_pass_nothing_is_due_until_its_time(testbot: TestBot) -> None:
    home(testbot)
    with testbot.store() as store:
        admin.add_session(store, "home", "2026-12-01T10:00", START)  # 16:00Z
        admin.add_coach(store, "console:coach", [], START)
    tick(testbot, utc("2026-11-30T12:00"))
    soon = utc("2026-11-30T12:01")
    with testbot.store() as store:
        assert agenda.due_cities(store, soon, soon + LONGEST_WAIT) == []
        assert agenda.due_coaches(store, soon, soon + LONGEST_WAIT) == []
        # The city is due when its 24-hour reminder is.
        due = utc("2026-11-30T16:00")
        assert agenda.due_cities(store, due, due + LONGEST_WAIT) != []


def test_a_session_added_after_a_pass_is_reminded_at_the_next_one(testbot: TestBot) -> None:
    home(testbot)
    assert tick(testbot, utc("2026-11-30T12:00")) == []  # no session: nothing for half a day
    with testbot.store() as store:
        admin.add_session(store, "home", "2026-11-30T08:00", START)  # 14:00Z, two hours away
    planned = tick(testbot, utc("2026-11-30T12:01"))
    assert [key.split("|")[1] for key in planned] == ["reminder-1440"]


def test_a_member_added_after_the_reminder_still_gets_it_while_it_is_useful(testbot: TestBot) -> None:
    home(testbot)
    with testbot.store() as store:
        admin.add_session(store, "home", "2026-12-01T10:00", START)
    assert len(tick(testbot, utc("2026-11-30T16:00"))) == 1
    with testbot.store() as store:
        admin.add_member(store, "console:bea", "home", START)
    tick(testbot, utc("2026-11-30T16:01"))
    assert kinds(testbot) == [("console:ana", "reminder-1440"), ("console:bea", "reminder-1440")]


def test_new_reminder_settings_are_planned_at_the_next_pass(testbot: TestBot) -> None:
    home(testbot)
    with testbot.store() as store:
        admin.add_session(store, "home", "2026-12-02T10:00", START)  # Wednesday 16:00Z
    assert tick(testbot, utc("2026-11-30T17:00")) == []  # 47 hours before
    with testbot.store() as store:
        admin.set_city_schedule(store, "home", reminders="48h,1h")
    assert [k.split("|")[1] for k in tick(testbot, utc("2026-11-30T17:01"))] == ["reminder-2880"]


def test_a_coach_given_a_zone_gets_the_digest_by_that_zone(testbot: TestBot) -> None:
    home(testbot)
    with testbot.store() as store:
        admin.add_coach(store, "console:coach", ["home"], START)  # Home's zone: 08:00 CST is 14:00Z
    assert tick(testbot, utc("2026-11-30T09:00")) == []
    with testbot.store() as store:
        admin.add_coach(store, "console:coach", [], START, zone="Europe/London")
    assert [k.split("|")[1] for k in tick(testbot, utc("2026-11-30T09:01"))] == ["digest"]


def test_a_blocker_opened_in_a_quiet_city_is_flagged_when_it_goes_stale(testbot: TestBot) -> None:
    home(testbot)
    with testbot.store() as store:
        admin.add_coach(store, "console:coach", ["home"], START)
        admin.set_city_schedule(store, "home", reminders="none", stale_after=1)
    tick(testbot, utc("2026-11-23T12:00"))
    testbot.clock.set(utc("2026-11-23T12:05"))
    testbot.say("console:ana", "blocker: waiting on the 311 export")
    flagged = [k for k in tick(testbot, utc("2026-11-24T12:06")) if "blocker_stale" in k]
    assert flagged == ["console:coach|blocker_stale|1"]


def test_a_program_calendar_loaded_puts_every_city_and_coach_back_on_the_next_pass(testbot: TestBot) -> None:
    # The program's end decides whether nudges and digests are planned at all.
    home(testbot)
    with testbot.store() as store:
        admin.add_coach(store, "console:coach", ["home"], START)
    tick(testbot, utc("2027-04-12T15:00"))
    soon = utc("2027-04-12T15:01")
    with testbot.store() as store:
        assert agenda.due_cities(store, soon, soon + LONGEST_WAIT) == []
        assert agenda.due_coaches(store, soon, soon + LONGEST_WAIT) == []
        store.save_program("2027-28", {"cohort": "2027-28", "phases": []}, soon)
    with testbot.store() as store:
        assert len(agenda.due_cities(store, soon, soon + LONGEST_WAIT)) == 1
        assert len(agenda.due_coaches(store, soon, soon + LONGEST_WAIT)) == 1


def test_a_clock_set_back_plans_again(testbot: TestBot) -> None:
    home(testbot)
    with testbot.store() as store:
        admin.add_session(store, "home", "2026-12-01T10:00", START)
    tick(testbot, utc("2026-12-05T12:00"))  # long after: the plan is set from this clock
    assert len(tick(testbot, utc("2026-11-30T16:00"))) == 1  # the 24-hour reminder, all the same


def test_an_expired_backlog_is_dropped_in_batches(testbot: TestBot) -> None:
    home(testbot)
    now = utc("2026-11-30T12:00")
    with testbot.store() as store:
        for n in range(25):
            store.enqueue(
                OutboxMessage(
                    key=f"old-{n}",
                    recipient="teams:T1:U1",
                    kind="nudge",
                    payload={"text": "x"},
                    due_at=now - timedelta(days=2),
                    next_attempt_at=now - timedelta(days=2),
                    expires_at=now - timedelta(days=1),
                    created_at=now - timedelta(days=2),
                )
            )
    assert sorted(agenda.drop_expired(testbot.engine, now, "expired", batch=10)) == sorted(
        f"old-{n}" for n in range(25)
    )
    with testbot.store() as store:
        assert {row.status for row in store.session.exec(select(OutboxMessage))} == {"dropped"}


def test_an_expired_row_left_sending_by_a_dead_deliverer_is_dropped_and_one_under_lease_is_not(
    testbot: TestBot,
) -> None:
    """A deliverer claimed two Teams rows and died; Teams is then taken out of the configuration, so no
    deliverer claims them again. Past their lease and their expiry they are dropped, as pending ones
    are, rather than stay `sending` for ever; a row whose lease still runs is its deliverer's."""
    home(testbot)
    now = utc("2026-11-30T12:00")
    with testbot.store() as store:
        for key, lease_ends in (("lapsed", now - timedelta(hours=1)), ("held", now + timedelta(seconds=30))):
            store.enqueue(
                OutboxMessage(
                    key=key,
                    recipient="teams:T1:U1",
                    kind="nudge",
                    payload={"text": "x"},
                    status=OutboxStatus.sending,
                    attempts=1,
                    due_at=now - timedelta(days=2),
                    next_attempt_at=lease_ends,
                    expires_at=now - timedelta(days=1),
                    created_at=now - timedelta(days=2),
                )
            )
    assert agenda.drop_expired(testbot.engine, now, "expired") == ["lapsed"]
    with testbot.store() as store:
        rows = {row.key: row.status for row in store.session.exec(select(OutboxMessage))}
    assert rows == {"lapsed": OutboxStatus.dropped, "held": OutboxStatus.sending}
