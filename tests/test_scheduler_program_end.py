"""Momentum nudges and weekly digests end with the program calendar in force (its last day, in the
city's zone for a nudge, the coach's for a digest); session reminders do not. Loading the next cohort's
calendar brings nudges and digests back at the next pass, without a restart."""

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import select
from typer.testing import CliRunner

from bot import admin
from bot.cli import app
from store.models import OutboxMessage
from tests.conftest import TestBot
from tests.test_scheduler import Inbox, nudges, outbox, quiet_city, runner, tick, utc

START = utc("2026-01-01T00:00")
# The bundled 2026–27 calendar's last day is Wed 31 Mar 2027 (Learning Loop 3 and the capacity pathway).
END_BOGOTA = utc("2027-04-01T05:00")  # its end in Bogotá (UTC-5)


def last_update(bot: TestBot, at: datetime) -> None:
    with bot.store() as store:
        city = store.city_by_slug("home")
        assert city is not None and city.id is not None
        store.add_update(city.id, "console:m", "x", "console", at)


def digests(inbox: Inbox) -> list[datetime]:
    return [at for at, _r, reply in inbox.received if reply.title == "Weekly digest"]


def test_a_quiet_city_gets_its_last_nudge_before_the_program_ends_and_none_after(testbot: TestBot) -> None:
    quiet_city(testbot)
    last_update(testbot, utc("2027-03-10T17:00"))  # Wednesday noon in Bogotá
    inbox = Inbox(testbot.clock)
    for day in range(60):  # noon in Bogotá, every day to 8 May: quiet all along
        tick(testbot, utc("2027-03-10T17:00") + timedelta(days=day), inbox)
    # After 7, 14 and 21 quiet days, the last on the program's last day; none after 28, 35…
    assert nudges(testbot, inbox) == [utc(f"2027-03-{day}T17:00") for day in (17, 24, 31)]
    assert all(row.expires_at and row.expires_at <= END_BOGOTA for row in outbox(testbot))


def test_a_nudge_held_up_past_the_end_is_dropped_not_sent(testbot: TestBot) -> None:
    # A city nudged at any hour of any day: its nudge would be useful until the next quiet stretch,
    # none comes, so it would wait for a platform down to come back however long after the end.
    quiet_city(testbot, nudge_hour=0, quiet_start=0, quiet_end=0, working_days=list(range(7)))
    inbox = Inbox(testbot.clock)
    tick(testbot, END_BOGOTA - timedelta(hours=1), inbox)  # 23:00 on the last day
    assert len(nudges(testbot, inbox)) == 1
    [row] = outbox(testbot)
    assert row.expires_at == END_BOGOTA


def test_a_coachs_monday_digest_stops_after_the_program_ends(testbot: TestBot) -> None:
    quiet_city(testbot, nudge_after_days=0)
    with testbot.store() as store:
        # In Tokyo (UTC+9) the program ends at 15:00Z on 31 Mar; Monday 08:00 there is Sunday 23:00Z.
        admin.add_coach(store, "console:coach", ["home"], START, zone="Asia/Tokyo")
    inbox = Inbox(testbot.clock)
    mondays = [utc("2027-02-28T23:00") + timedelta(weeks=week) for week in range(9)]  # 1 Mar to 26 Apr
    for monday in mondays:
        tick(testbot, monday, inbox)
        tick(testbot, monday + timedelta(hours=6), inbox)
    assert digests(inbox) == mondays[:5]  # to Monday 29 Mar; none on 5, 12, 19 and 26 Apr


def test_the_next_cohorts_calendar_brings_nudges_and_digests_back_at_the_next_pass(
    testbot: TestBot, db_url: str, tmp_path: Path
) -> None:
    quiet_city(testbot)  # no update since 18 Nov 2026: a nudge every week while the program runs
    with testbot.store() as store:
        admin.add_coach(store, "console:coach", ["home"], START)  # Bogotá's zone: Monday 08:00 is 13:00Z
    inbox = Inbox(testbot.clock)
    running = runner(testbot, inbox)  # one server, never restarted

    def pass_at(at: datetime) -> None:
        testbot.clock.set(at)
        asyncio.run(running.run())

    monday = utc("2027-04-12T15:00")  # 10:00 in Bogotá, twelve days after the end
    pass_at(monday)
    assert inbox.received == []
    path = tmp_path / "2027-28.yaml"
    path.write_text(
        "cohort: 2027-28\n"
        "phases:\n"
        "  - {key: scoping, name: Scoping, start: 2027-06-01, end: 2027-08-31}\n"
        "  - {key: ll3, name: Learning Loop 3, start: 2028-02-01, end: 2028-03-31}\n"
    )
    loaded = CliRunner().invoke(app, ["program", "load", str(path), "--db", db_url])
    assert loaded.exit_code == 0, loaded.stderr
    # The next pass, a minute later: the city and the coach were planned for half a day on.
    pass_at(monday + timedelta(minutes=1))
    assert nudges(testbot, inbox) == [monday + timedelta(minutes=1)]
    assert digests(inbox) == [monday + timedelta(minutes=1)]


def test_reminders_of_a_session_after_the_end_still_go_and_nothing_else(testbot: TestBot) -> None:
    quiet_city(testbot)  # quiet since November: it would be nudged on Monday 19 Apr at 10:00
    with testbot.store() as store:
        admin.add_session(store, "home", "2027-04-20T10:00", START, 60, "Follow-up")  # 15:00Z
        admin.add_coach(store, "console:coach", ["home"], START)  # and a digest at 13:00Z that Monday
    inbox = Inbox(testbot.clock)
    for hour in range(42):
        tick(testbot, utc("2027-04-19T00:00") + timedelta(hours=hour), inbox)
    assert [(at, reply.title) for at, _r, reply in inbox.received] == [
        (utc("2027-04-19T15:00"), "Reminder: Follow-up"),
        (utc("2027-04-20T14:00"), "Reminder: Follow-up"),
    ]
    with testbot.store() as store:
        kinds = {row.kind for row in store.session.exec(select(OutboxMessage))}
    assert kinds == {"reminder-1440", "reminder-60"}
