"""Momentum nudges and weekly digests follow the program calendar in force: none before its first day
or after its last (in the city's zone for a nudge, the coach's for a digest), and a city's quiet days
count from the first day; session reminders go on. Loading the next cohort's calendar brings nudges and
digests back once it begins, without a restart."""

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


def load_next_cohort(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "2027-28.yaml"
    path.write_text(
        "cohort: 2027-28\n"
        "phases:\n"
        "  - {key: scoping, name: Scoping, start: 2027-06-01, end: 2027-08-31}\n"
        "  - {key: ll3, name: Learning Loop 3, start: 2028-02-01, end: 2028-03-31}\n"
    )
    loaded = CliRunner().invoke(app, ["program", "load", str(path), "--db", db_url])
    assert loaded.exit_code == 0, loaded.stderr


def test_the_next_cohorts_calendar_brings_nudges_and_digests_back_once_it_begins(
    testbot: TestBot, db_url: str, tmp_path: Path
) -> None:
    quiet_city(testbot)
    last_update(testbot, utc("2027-03-10T17:00"))  # and none after it: a nudge every week to the end
    with testbot.store() as store:
        admin.add_coach(store, "console:coach", ["home"], START)  # Bogotá's zone: Monday 08:00 is 13:00Z
    inbox = Inbox(testbot.clock)
    running = runner(testbot, inbox)  # one server, never restarted

    def pass_at(at: datetime) -> None:
        testbot.clock.set(at)
        asyncio.run(running.run())

    pass_at(utc("2027-03-17T17:00"))  # this cohort's first nudge: seven quiet days (kept 180 days)
    assert nudges(testbot, inbox) == [utc("2027-03-17T17:00")]
    monday = utc("2027-04-12T15:00")  # 10:00 in Bogotá, twelve days after the end
    pass_at(monday)
    load_next_cohort(db_url, tmp_path)  # it begins on Tuesday 1 Jun 2027
    for at in (monday + timedelta(minutes=1), utc("2027-05-31T15:00")):
        pass_at(at)
    assert len(inbox.received) == 1  # nothing between the cohorts, nor before the next one begins
    # Its first Monday, and its first seven quiet days (counted from its start, though the city has
    # been quiet since March): a nudge planned afresh, not taken for this cohort's first one.
    for at in (utc("2027-06-07T13:00"), utc("2027-06-07T15:00"), utc("2027-06-08T15:00")):
        pass_at(at)
    assert digests(inbox) == [utc("2027-06-07T13:00")]
    assert nudges(testbot, inbox)[1:] == [utc("2027-06-08T15:00")]
    assert inbox.received[-1][2].text.startswith("No update from Home in 7 days.")


def test_a_city_added_ahead_of_its_cohort_is_not_nudged_before_the_program_begins(
    testbot: TestBot, db_url: str, tmp_path: Path
) -> None:
    load_next_cohort(db_url, tmp_path)
    with testbot.store() as store:
        admin.add_city(store, "home", "Home", "America/Bogota", utc("2027-04-01T00:00"), None, None, "en")
        admin.add_member(store, "console:m", "home", utc("2027-04-01T00:00"))
        admin.add_coach(store, "console:coach", ["home"], utc("2027-04-01T00:00"))
    inbox = Inbox(testbot.clock)
    for day in range(80):  # 10:00 in Bogotá, every day from 5 Apr (no update at all) to 23 Jun
        tick(testbot, utc("2027-04-05T15:00") + timedelta(days=day), inbox)
    assert nudges(testbot, inbox) == [utc(f"2027-06-{day}T15:00") for day in ("08", "15", "22")]
    assert digests(inbox) == [utc(f"2027-06-{day}T15:00") for day in ("07", "14", "21")]  # Mondays
    with testbot.store() as store:
        keys = [row.key for row in store.session.exec(select(OutboxMessage)) if row.kind == "nudge"]
    assert len(keys) == 3 and all(key.endswith("@2027-06-01") for key in keys)


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
