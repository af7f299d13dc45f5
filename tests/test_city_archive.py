"""A city that leaves the program (`cda-bot city archive`): nothing more is planned for it or about it,
what was planned and not yet sent is dropped, and a coach's views of all their cities leave it out; its
team can still write, a coach can still name it, and `city restore` brings it back.

Against the `world` of tests/conftest.py (alpha bound to slack:T0001:C0001, beta, gamma, a weekly session
each), through the real dispatcher, planner, deliverer and CLI."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from bot import admin
from bot.core.messages import DeliveryError
from store.models import LEFT_PROGRAM, OutboxMessage, OutboxStatus
from tests.conftest import NOW, TestBot
from tests.test_cli import run
from tests.test_scheduler import Inbox, tick
from web import portfolio

ALPHA_CHANNEL = "slack:T0001:C0001"
# Monday 30 Nov 2026: the coaches' digests at 08:00 in Chicago (14:00Z); Alpha's 24-hour reminder of its
# Tuesday 10:00 session at 16:00Z.
DIGESTS_DUE = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
ALPHA_REMINDER_DUE = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


def archive(bot: TestBot, slug: str) -> int:
    with bot.store() as store:
        return admin.archive_city(store, slug, bot.clock.now()).dropped


def shown(inbox: Inbox, *marks: str) -> list[str]:
    texts = [" ".join([reply.text, reply.title or "", *reply.items]) for _at, _who, reply in inbox.received]
    return [text for text in texts if any(mark in text for mark in marks)]


def test_an_archived_city_is_sent_nothing_more_and_what_waited_is_dropped(world: TestBot) -> None:
    slack, console = Inbox(world.clock, "slack"), Inbox(world.clock, "console")
    slack.failing = DeliveryError("slack rate limited", retry_after=60)
    tick(world, ALPHA_REMINDER_DUE, slack, console)  # Alpha's channel reminder waits for a retry
    slack.failing = None
    console.received.clear()  # Ann, Alpha's member on the console, had hers at once
    assert archive(world, "alpha") >= 1
    for hours in range(0, 24 * 9, 3):  # nine days: every reminder and nudge that could fall due
        tick(world, ALPHA_REMINDER_DUE + timedelta(minutes=5, hours=hours), slack, console)
    assert shown(slack, "ALPHA", "Alpha") == []
    assert [reply.text for _at, who, reply in console.received if who == "console:a1"] == []
    assert shown(console, "BETA session"), "Beta, still in the program, kept its reminders"
    with world.store() as store:
        rows = [row for row in store.session.exec(select(OutboxMessage)) if row.recipient == ALPHA_CHANNEL]
    assert rows and all(r.status == OutboxStatus.dropped and r.last_error == LEFT_PROGRAM for r in rows)


def test_a_coachs_digest_leaves_an_archived_city_out_and_none_goes_for_it_alone(world: TestBot) -> None:
    archive(world, "alpha")
    console = Inbox(world.clock, "console")
    tick(world, DIGESTS_DUE, console)
    digests = {who: reply for _at, who, reply in console.received if reply.title == "Weekly digest"}
    assert "console:coach-a" not in digests  # Alpha was all they coach
    for coach in ("console:coach-ab", "console:coach-all"):
        text = " ".join([digests[coach].text, *digests[coach].items])
        assert "Beta" in text and "Alpha" not in text


def test_all_my_cities_leave_an_archived_city_out_where_naming_it_still_shows_it(world: TestBot) -> None:
    archive(world, "alpha")
    everything = world.say("console:coach-all", "/cda status")
    assert "Beta" in everything and "Gamma" in everything and "Alpha" not in everything
    assert "Alpha" not in world.say("console:coach-all", "/cda blockers")
    assert "ALPHA-UPDATE-TEXT" in world.say("console:coach-all", "/cda updates alpha")
    # Its team can still write, and is answered as before.
    assert "recorded for Alpha" in world.say("console:a1", "update: still going as alumni")
    # A coach of Alpha alone has no city in the program to list, and is told so, not shown nothing.
    assert world.say("console:coach-a", "/cda quiet") == (
        "Every city you coach has left the program. Name one to see it: `/cda status alpha`."
    )
    with world.store() as store:
        assert [row.city.slug for row in portfolio.rows(store, None, NOW, "en")] == ["beta", "gamma"]


def test_a_restored_city_is_planned_again_at_the_next_pass(world: TestBot) -> None:
    archive(world, "alpha")
    console = Inbox(world.clock, "console")
    tick(world, ALPHA_REMINDER_DUE, console)
    assert shown(console, "ALPHA session") == []
    with world.store() as store:
        admin.restore_city(store, "alpha")
    tick(world, ALPHA_REMINDER_DUE + timedelta(minutes=1), console)
    assert len(shown(console, "ALPHA session")) == 1  # to Ann, Alpha's member on the console


def test_city_archive_and_restore_from_the_command_line(world: TestBot, db_url: str) -> None:
    assert run(db_url, "city", "join-code", "alpha")[0] == 0
    code, out, _ = run(db_url, "city", "archive", "alpha")
    # The notices of Alpha's blocker to its three coaches had not gone yet (no deliverer runs here); and
    # whoever joined now would be told reminders will come: the code stops working.
    assert (
        code == 0 and out == "archived city alpha (Alpha); 3 planned messages not sent; 1 join code revoked\n"
    )
    codes = json.loads(run(db_url, "city", "join-codes", "alpha", "--json")[1])
    assert [code["state"] for code in codes] == ["revoked"]
    code, _out, err = run(db_url, "city", "join-code", "alpha")
    assert code == 1 and "alpha is archived: `cda-bot city restore alpha` before a join code" in err
    code, out, _ = run(db_url, "session", "add", "--city", "alpha", "--start", "2026-12-10T10:00")
    assert code == 0 and out.endswith(
        "(alpha is archived: nothing is planned for it until `cda-bot city restore alpha`)\n"
    )
    code, _out, err = run(db_url, "city", "archive", "alpha")
    assert code == 1 and "alpha is already archived (city restore alpha brings it back)" in err
    code, _out, err = run(db_url, "city", "archive", "atlantis")
    assert code == 1 and "unknown city 'atlantis'" in err
    listed = {city["slug"]: city["archived"] for city in json.loads(run(db_url, "city", "list", "--json")[1])}
    assert listed["beta"] is None and listed["gamma"] is None
    assert datetime.now(UTC) - datetime.fromisoformat(listed["alpha"]) < timedelta(minutes=5)
    assert run(db_url, "city", "restore", "alpha")[:2] == (0, "restored city alpha (Alpha)\n")
    code, _out, err = run(db_url, "city", "restore", "alpha")
    assert code == 1 and "alpha is not archived" in err


def test_a_cohorts_cities_are_archived_in_one_command_all_or_none(world: TestBot, db_url: str) -> None:
    """At a cohort's end an admin archives its cities together; one slug mistyped, and none is archived
    (half a cohort archived is worse than none: the admin fixes the slug and runs it again)."""
    code, _out, err = run(db_url, "city", "archive", "alpha", "gama")
    assert code == 1 and "unknown city 'gama'" in err
    listed = json.loads(run(db_url, "city", "list", "--json")[1])
    assert [city["archived"] for city in listed] == [None, None, None]
    code, out, _ = run(db_url, "city", "archive", "alpha", "gamma")
    assert code == 0 and [line.split(";")[0] for line in out.splitlines()] == [
        "archived city alpha (Alpha)",
        "archived city gamma (Gamma)",
    ]
    listed = {city["slug"]: city["archived"] for city in json.loads(run(db_url, "city", "list", "--json")[1])}
    assert listed["alpha"] and listed["gamma"] and listed["beta"] is None
    code, out, _ = run(db_url, "city", "restore", "alpha", "gamma")
    assert (code, out) == (0, "restored city alpha (Alpha)\nrestored city gamma (Gamma)\n")


def test_what_a_pass_under_way_planned_as_the_city_was_archived_is_dropped_when_it_would_go(
    world: TestBot,
) -> None:
    slack = Inbox(world.clock, "slack")
    slack.failing = DeliveryError("slack rate limited", retry_after=60)
    tick(world, ALPHA_REMINDER_DUE, slack)  # Alpha's channel reminder, written as by that pass
    slack.failing = None
    with world.store() as store:  # archived after it was written, not by the command that drops it
        alpha = store.city_by_slug("alpha")
        assert alpha is not None
        alpha.archived_at = world.clock.now()
        store.session.add(alpha)
    tick(world, ALPHA_REMINDER_DUE + timedelta(minutes=5), slack)
    assert slack.received == []
    with world.store() as store:
        rows = [row for row in store.session.exec(select(OutboxMessage)) if row.recipient == ALPHA_CHANNEL]
    assert [(row.status, row.last_error) for row in rows] == [(OutboxStatus.dropped, LEFT_PROGRAM)]


def test_loading_the_next_cohorts_calendar_names_the_cities_still_in_the_program(
    world: TestBot, db_url: str, tmp_path: Path
) -> None:
    archive(world, "beta")
    calendar = tmp_path / "2027-28.yaml"
    calendar.write_text(
        "cohort: 2027-28\nphases:\n  - {key: s, name: Scoping, start: 2027-06-01, end: 2027-08-31}\n"
    )
    code, out, _ = run(db_url, "program", "load", str(calendar))
    assert code == 0
    assert " ".join(out.split()) == (  # as a terminal of any width folds it
        "loaded program calendar 2027-28: 1 phase, 0 events 2 cities of 2026-27 are still in the program "
        "(alpha, gamma), nudged again from Tue 1 Jun 2027: archive those whose program is over (`cda-bot "
        "city archive SLUG…`)"
    )
    # The same cohort again (a corrected calendar): nothing to say about the cities.
    code, out, _ = run(db_url, "program", "load", str(calendar))
    assert code == 0 and out == "loaded program calendar 2027-28: 1 phase, 0 events\n"
