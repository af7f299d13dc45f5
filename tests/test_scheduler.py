"""Reminders, nudges, digests and notices: due at the right instant in local time, sent exactly once."""

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import select
from typer.testing import CliRunner

from bot import admin
from bot.cli import app
from bot.core.clock import FixedClock
from bot.core.messages import DeliveryError, Reply
from bot.runtime.delivery import MAX_ATTEMPTS, Deliverer
from bot.runtime.ratelimit import RateLimiter
from bot.runtime.turns import Turns
from scheduler.runner import EXPIRED, KEEP_SENT, PassRunner
from store import agenda
from store.db import READER, make_engine
from store.models import NUDGE_AFTER_DAYS_MAX, STALE_KIND, Blocker, OutboxMessage, stale_key
from tests.conftest import TestBot, due_message


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Inbox:
    """An adapter that records deliveries with the bot's clock at the time, failing while told to."""

    def __init__(self, clock: FixedClock, platform: str = "console") -> None:
        self.platform = platform
        self.clock = clock
        self.received: list[tuple[datetime, str, Reply]] = []
        self.failing: Exception | None = None

    async def send(
        self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
    ) -> None:
        await asyncio.sleep(0)
        if self.failing is not None:
            raise self.failing
        self.received.append((self.clock.now(), recipient, reply))


def runner(bot: TestBot, *inboxes: Inbox, engine: Engine | None = None) -> PassRunner:
    engine = engine or bot.engine
    deliverer = Deliverer(engine, {i.platform: i for i in inboxes}, bot.clock, RateLimiter(intervals={}))
    return PassRunner(engine, deliverer, bot.clock)


def tick(bot: TestBot, at: datetime, *inboxes: Inbox) -> None:
    bot.clock.set(at)
    asyncio.run(runner(bot, *inboxes).run())


def city_with_session(
    bot: TestBot,
    zone: str,
    start: str,
    rule: str = "FREQ=WEEKLY",
    until: str = "2027-12-31",
    slug: str = "home",
) -> None:
    with bot.store() as store:
        admin.add_city(store, slug, slug.title(), zone, utc("2026-01-01T00:00"), None, "implementation")
        admin.add_member(store, f"console:{slug}-member", slug, utc("2026-01-01T00:00"))
        admin.add_session(store, slug, start, utc("2026-01-01T00:00"), 60, "Coaching", rule, until)
        # A recent update keeps the momentum nudge out of these reminder tests.
        city = store.city_by_slug(slug)
        assert city is not None and city.id is not None
        city.nudge_after_days = 0
        store.session.add(city)


def outbox(bot: TestBot) -> list[OutboxMessage]:
    with bot.store() as store:
        return list(store.session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))


DST_CASES = [
    # zone, first session (local), ticks from, ticks to, the sessions' instants (UTC) in that window
    (
        "America/Chicago",
        "2026-10-27T10:00",
        "2026-10-25T00:00",
        "2026-11-10T17:00",
        ["2026-10-27T15:00", "2026-11-03T16:00", "2026-11-10T16:00"],
    ),
    (
        "America/New_York",
        "2026-10-27T10:00",
        "2026-10-25T00:00",
        "2026-11-10T17:00",
        ["2026-10-27T14:00", "2026-11-03T15:00", "2026-11-10T15:00"],
    ),
    (
        "Europe/London",
        "2026-10-20T10:00",
        "2026-10-18T00:00",
        "2026-11-03T11:00",
        ["2026-10-20T09:00", "2026-10-27T10:00", "2026-11-03T10:00"],
    ),
    (
        "America/Santiago",
        "2027-03-23T10:00",
        "2027-03-21T00:00",
        "2027-04-06T15:00",
        ["2027-03-23T13:00", "2027-03-30T13:00", "2027-04-06T14:00"],
    ),
]


@pytest.mark.parametrize(
    ("zone", "start", "first", "last", "sessions"), DST_CASES, ids=[c[0] for c in DST_CASES]
)
def test_reminders_keep_local_time_across_dst_none_missing_none_doubled(
    testbot: TestBot, zone: str, start: str, first: str, last: str, sessions: list[str]
) -> None:
    city_with_session(testbot, zone, start)
    inbox = Inbox(testbot.clock)
    expected = sorted(
        (utc(s) - timedelta(minutes=offset), f"reminder-{offset}") for s in sessions for offset in (1440, 60)
    )
    # Passes every 3 hours (at :07, never on a due instant), one second before each due instant and at it.
    instants = {
        utc(first) + timedelta(hours=h, minutes=7)
        for h in range(0, int((utc(last) - utc(first)).total_seconds() // 3600), 3)
    }
    for due, _kind in expected:
        instants |= {due - timedelta(seconds=1), due}
    pass_runner = runner(testbot, inbox)
    for at in sorted(instants):
        testbot.clock.set(at)
        before = len(inbox.received)
        asyncio.run(pass_runner.run())
        due_now = [d for d, _k in expected if d == at]
        assert len(inbox.received) - before == len(due_now), f"at {at}"
    assert sorted((received, reply.title) for received, _r, reply in inbox.received) == [
        (due, "Reminder: Coaching") for due, _kind in expected
    ]
    assert sorted((row.due_at, row.kind) for row in outbox(testbot)) == expected
    assert {row.status for row in outbox(testbot)} == {"sent"}


def test_reminder_says_time_phase_blockers_and_asks_for_an_update(testbot: TestBot) -> None:
    city_with_session(testbot, "America/Chicago", "2026-11-24T10:00")
    testbot.say("console:home-member", "blocker: waiting on 311 data")
    inbox = Inbox(testbot.clock)
    tick(testbot, utc("2026-11-30T16:00"), inbox)  # 24 h before Tue 1 Dec 10:00 CST
    ((_at, recipient, reply),) = inbox.received
    assert recipient == "console:home-member"
    assert reply.text.splitlines() == [
        "Reminder: Coaching",
        "Coaching starts in 24 hours: Tue 1 Dec 2026, 10:00 CST.",
        "Phase: Learning Loop 2: Solution Build",
        "1 open blocker",
        "No update since your last session: post one before you meet, e.g. `update: …`",
    ]
    testbot.clock.set(utc("2026-11-30T20:00"))
    testbot.say("console:home-member", "update: data arrived")
    tick(testbot, utc("2026-12-01T15:00"), inbox)
    assert "No update since" not in inbox.received[-1][2].text
    assert "starts in 1 hour" not in inbox.received[-1][2].text  # 60 minutes read as minutes
    assert "starts in 60 minutes" in inbox.received[-1][2].text


def test_a_bound_channel_gets_the_reminder_instead_of_each_member(testbot: TestBot) -> None:
    city_with_session(testbot, "America/Chicago", "2026-11-24T10:00")
    with testbot.store() as store:
        admin.bind(store, "slack:T0001:C0001", "home", utc("2026-01-01T00:00"))
    slack = Inbox(testbot.clock, "slack")
    tick(testbot, utc("2026-11-30T16:00"), slack, Inbox(testbot.clock))
    assert [r for _a, r, _m in slack.received] == ["slack:T0001:C0001"]


@pytest.mark.parametrize(
    ("first_pass", "sent", "dropped"),
    [
        ("2026-11-30T17:00", ["reminder-1440"], []),  # 23 h before: the 24 h reminder is still useful
        ("2026-12-01T15:30", ["reminder-60"], ["reminder-1440"]),  # 30 min before: only the 1 h one
        ("2026-12-01T16:05", [], []),  # the session began: nothing, never "starts in an hour"
    ],
)
def test_after_downtime_a_passed_reminder_is_sent_only_while_useful(
    testbot: TestBot, first_pass: str, sent: list[str], dropped: list[str]
) -> None:
    city_with_session(testbot, "America/Chicago", "2026-11-24T10:00")
    inbox = Inbox(testbot.clock)
    tick(testbot, utc(first_pass), inbox)
    rows = [r for r in outbox(testbot) if "@2026-12-01" in r.key]
    assert sorted(r.kind for r in rows if r.status == "sent") == sent
    assert sorted(r.kind for r in rows if r.status == "dropped") == dropped
    assert len(inbox.received) == len(sent)


def test_a_reminder_held_up_past_the_start_is_dropped_not_sent(testbot: TestBot) -> None:
    city_with_session(testbot, "America/Chicago", "2026-11-24T10:00")
    inbox = Inbox(testbot.clock)
    inbox.failing = DeliveryError("down")
    tick(testbot, utc("2026-12-01T15:00"), inbox)  # 1 h before: planned, delivery fails
    inbox.failing = None
    tick(testbot, utc("2026-12-01T16:01"), inbox)  # the platform is back after the session began
    assert inbox.received == []
    (row,) = [r for r in outbox(testbot) if r.kind == "reminder-60"]
    assert row.status == "dropped"


@pytest.mark.parametrize("change", ["skipped", "removed", "moved", "zone"])
def test_a_reminder_waiting_for_a_retry_is_not_sent_for_a_session_cancelled_or_moved(
    testbot: TestBot, change: str
) -> None:
    # A one-off session on Tuesday 1 Dec, 10:00 in Chicago (16:00Z).
    city_with_session(testbot, "America/Chicago", "2026-12-01T10:00", rule=None, until=None)  # type: ignore[arg-type]
    inbox = Inbox(testbot.clock)
    inbox.failing = DeliveryError("down")
    tick(testbot, utc("2026-11-30T16:00"), inbox)  # 24 h before: planned, the platform is down
    with testbot.store() as store:
        (session,) = store.sessions_of(store.city_by_slug("home").id)  # type: ignore[union-attr,arg-type]
        if change == "skipped":
            admin.skip_day(store, "home", "2026-12-01", utc("2026-11-30T16:00"))
        elif change == "removed":
            admin.remove_session(store, "home", session.id)  # type: ignore[arg-type]
        elif change == "moved":  # as a calendar import moves it: to 14:00 (20:00Z)
            session.start_local = datetime(2026, 12, 1, 14, 0)
            store.session.add(session)
        else:  # the city's zone corrected: 10:00 in Santiago is 13:00Z
            city = store.city_by_slug("home")
            assert city is not None
            city.zone = "America/Santiago"
            store.session.add(city)
    inbox.failing = None
    tick(testbot, utc("2026-11-30T16:05"), inbox)  # the platform is back: the retry is due
    (old,) = [r for r in outbox(testbot) if "@2026-12-01T16:00Z" in r.key]
    assert (old.status, old.last_error) == ("dropped", "its session was cancelled or moved")
    tick(testbot, utc("2026-11-30T20:00"), inbox)
    # Never "starts tomorrow at 10:00 CST"; the session at its new time is reminded as usual.
    texts = [reply.text for _at, _who, reply in inbox.received]
    expected = {"moved": "14:00 CST", "zone": "10:00 UTC-03"}.get(change)
    assert [expected in text for text in texts] == ([True] if expected else []), texts


def test_a_failed_send_is_retried_then_marked_failed_and_shown_to_coaches(world: TestBot) -> None:
    with world.store() as store:
        alpha = store.city_by_slug("alpha")
        assert alpha is not None and alpha.id is not None
        for city in store.cities():
            city.nudge_after_days = 0
            store.session.add(city)
    inbox = Inbox(world.clock, "slack")
    inbox.failing = DeliveryError("slack rate limited", retry_after=90)
    at = utc("2026-11-30T16:00")  # 24 h before Alpha's Tuesday session, sent to its Slack channel
    tick(world, at, inbox)
    (row,) = [r for r in outbox(world) if r.recipient == "slack:T0001:C0001"]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, at + timedelta(seconds=90))
    for attempt in range(2, MAX_ATTEMPTS + 1):
        at = at + timedelta(minutes=59 if attempt < MAX_ATTEMPTS else 60)
        tick(world, at, inbox)
    (row,) = [r for r in outbox(world) if r.recipient == "slack:T0001:C0001"]
    assert (row.status, row.attempts, row.last_error) == (
        "failed",
        MAX_ATTEMPTS,
        "slack rate limited",
    )
    assert "Failed deliveries: 1 (cda-bot reminders list)" in world.say(
        "console:coach-a", "/cda status alpha"
    )
    assert "1 failed delivery" in world.say("console:admin", "/cda status")
    assert "Failed" not in world.say("console:a1", "/cda status")


@pytest.mark.parametrize("rounds", [12])
def test_two_servers_racing_deliver_each_reminder_once(testbot: TestBot, db_url: str, rounds: int) -> None:
    for i in range(rounds):
        city_with_session(testbot, "America/Chicago", "2026-11-24T10:00", slug=f"city{i:02d}")
    engines = [make_engine(db_url), make_engine(db_url)]
    inboxes = [Inbox(testbot.clock), Inbox(testbot.clock)]
    runners = [runner(testbot, inbox, engine=engine) for inbox, engine in zip(inboxes, engines, strict=True)]

    async def race() -> None:
        await asyncio.gather(*(r.run() for r in runners))

    for at in ("2026-11-30T16:00", "2026-11-30T16:00", "2026-12-01T15:00", "2026-12-01T15:00:01"):
        testbot.clock.set(utc(at))
        asyncio.run(race())
    received = [(recipient, reply.text) for inbox in inboxes for _at, recipient, reply in inbox.received]
    assert len(received) == 2 * rounds and len(set(received)) == 2 * rounds
    assert {row.status for row in outbox(testbot)} == {"sent"}
    for engine in engines:
        engine.dispose()


def quiet_city(bot: TestBot, zone: str = "America/Bogota", **settings: Any) -> None:
    with bot.store() as store:
        admin.add_city(store, "home", "Home", zone, utc("2026-01-01T00:00"), None, None, "en")
        admin.add_member(store, "console:m", "home", utc("2026-01-01T00:00"))
        city = store.city_by_slug("home")
        assert city is not None and city.id is not None
        for name, value in settings.items():
            setattr(city, name, value)
        store.session.add(city)
        # The last update: Wednesday 18 Nov 2026, noon in Bogotá.
        store.add_update(city.id, "console:m", "x", "console", utc("2026-11-18T17:00"))  # type: ignore[arg-type]


def nudges(bot: TestBot, inbox: Inbox) -> list[datetime]:
    return [at for at, _r, reply in inbox.received if reply.text.startswith("No update from")]


def test_nudge_waits_for_a_working_day_at_10_and_never_in_quiet_hours(testbot: TestBot) -> None:
    quiet_city(testbot)
    inbox = Inbox(testbot.clock)
    # Bogotá is UTC-5. Seven quiet days end on Wednesday 25 Nov at noon; the nudge is due then.
    for local in (
        "2026-11-25T11:00",
        "2026-11-25T21:00",
        "2026-11-28T11:00",
        "2026-11-29T11:00",
        "2026-11-30T07:30",
        "2026-11-30T09:59",
    ):
        tick(testbot, utc(local) + timedelta(hours=5), inbox)
    assert nudges(testbot, inbox) == []  # not quiet long enough, then quiet hours, weekend, early morning
    quiet_city_tick = utc("2026-11-30T10:00") + timedelta(hours=5)
    tick(testbot, quiet_city_tick, inbox)
    tick(testbot, quiet_city_tick + timedelta(hours=3), inbox)
    assert nudges(testbot, inbox) == [quiet_city_tick]
    assert "No update from Home in 11 days" in inbox.received[-1][2].text
    tick(testbot, utc("2026-12-02T16:00"), inbox)  # 13 days and 23 hours: still the first stretch
    assert len(nudges(testbot, inbox)) == 1
    tick(testbot, utc("2026-12-02T18:00"), inbox)  # 14 quiet days: the second nudge
    assert len(nudges(testbot, inbox)) == 2
    testbot.clock.set(utc("2026-12-02T19:00"))
    testbot.say("console:m", "update: we are back")
    tick(testbot, utc("2026-12-09T15:00"), inbox)  # six days after the update: nothing
    assert len(nudges(testbot, inbox)) == 2


def test_nudge_follows_the_citys_own_working_days_and_quiet_hours(testbot: TestBot) -> None:
    quiet_city(testbot, "Asia/Dubai", working_days=[6, 0, 1, 2, 3], quiet_start=18, quiet_end=9)
    inbox = Inbox(testbot.clock)
    tick(testbot, utc("2026-11-27T08:00"), inbox)  # Friday 12:00 in Dubai: not a working day there
    tick(testbot, utc("2026-11-29T15:00"), inbox)  # Sunday 19:00: working day, but quiet hours
    assert nudges(testbot, inbox) == []
    tick(testbot, utc("2026-11-30T06:00"), inbox)  # Monday 10:00
    assert nudges(testbot, inbox) == [utc("2026-11-30T06:00")]


@pytest.mark.parametrize("quiet", [(0, 8), (0, 0), (12, 14)], ids=["from-midnight", "none", "midday"])
def test_a_nudge_goes_out_whenever_the_quiet_hours_begin(testbot: TestBot, quiet: tuple[int, int]) -> None:
    # Quiet hours that began earlier today (at midnight, at noon) or none at all (0-0): the nudge was
    # once planned already expired, dropped in the same pass and never sent.
    quiet_city(testbot, quiet_start=quiet[0], quiet_end=quiet[1])
    inbox = Inbox(testbot.clock)
    monday_15 = utc("2026-11-30T15:00") + timedelta(hours=5)  # Bogotá: 12 quiet days, past any quiet hours
    tick(testbot, monday_15, inbox)
    assert nudges(testbot, inbox) == [monday_15]
    # Useful while nudges may go out: to midnight, or the next quiet hours.
    [row] = outbox(testbot)
    assert row.expires_at == utc("2026-12-01T00:00") + timedelta(hours=5)


def test_weekly_digest_monday_8_in_the_coachs_zone_once(world: TestBot) -> None:
    with world.store() as store:
        admin.add_coach(store, "console:coach-a", [], utc("2026-01-01T00:00"), zone="Europe/London")
    inbox = Inbox(world.clock)
    for at in ("2026-11-30T07:59", "2026-11-30T08:00", "2026-11-30T09:00", "2026-12-01T08:00"):
        tick(world, utc(at), inbox)
    digests = [(at, r) for at, r, reply in inbox.received if reply.title == "Weekly digest"]
    assert (utc("2026-11-30T08:00"), "console:coach-a") in digests
    assert [r for _at, r in digests].count("console:coach-a") == 1
    # coach-ab has no zone of its own: Alpha's (America/Chicago) is used, 08:00 CST is 14:00Z.
    assert not [r for at, r in digests if r == "console:coach-ab" and at < utc("2026-11-30T14:00")]
    tick(world, utc("2026-11-30T14:00"), inbox)
    assert [r for _at, r, reply in inbox.received if reply.title == "Weekly digest"].count(
        "console:coach-ab"
    ) == 1
    ((_at, _r, digest),) = [
        m for m in inbox.received if m[1] == "console:coach-a" and m[2].title == "Weekly digest"
    ]
    assert "*Alpha*" in digest.text and "ALPHA-BLOCKER-TEXT" in digest.text


def alpha_blocker_without_nudges(world: TestBot) -> Blocker:
    """Alpha's open blocker, with every city's nudges off, so that only blocker notices are planned."""
    with world.store() as store:
        for city in store.cities():
            city.nudge_after_days = 0
            store.session.add(city)
        return store.session.exec(select(Blocker).where(Blocker.text == "ALPHA-BLOCKER-TEXT")).one()


def stale_notices(inbox: Inbox) -> list[tuple[str, str]]:
    """(recipient, "Blocker #n in City") of each stale-blocker notice received, sorted."""
    return sorted(
        (r, reply.text.split(" has been")[0])
        for _at, r, reply in inbox.received
        if "has been open" in reply.text
    )


def test_blockers_open_14_days_are_flagged_to_coaches_once(world: TestBot) -> None:
    inbox = Inbox(world.clock)
    blocker = alpha_blocker_without_nudges(world)
    opened = blocker.opened_at
    tick(world, opened + timedelta(days=13, hours=23), inbox)
    assert stale_notices(inbox) == []
    tick(world, opened + timedelta(days=14, minutes=1), inbox)
    tick(world, opened + timedelta(days=15), inbox)
    assert [s for s in stale_notices(inbox) if "Alpha" in s[1]] == [
        ("console:coach-a", f"Blocker #{blocker.id} in Alpha"),
        ("console:coach-ab", f"Blocker #{blocker.id} in Alpha"),
        ("console:coach-all", f"Blocker #{blocker.id} in Alpha"),
    ]
    assert len(stale_notices(inbox)) == 6  # Alpha's to 3 coaches, Beta's to 2, Gamma's to 1: once each


def test_a_blocker_flagged_after_one_day_says_one_day(world: TestBot) -> None:
    blocker = alpha_blocker_without_nudges(world)
    with world.store() as store:
        alpha = store.city_by_slug("alpha")
        assert alpha is not None
        alpha.stale_blocker_days = 1
        store.session.add(alpha)
    inbox = Inbox(world.clock)
    tick(world, blocker.opened_at + timedelta(days=1, minutes=1), inbox)
    [notice] = [m for _at, r, m in inbox.received if r == "console:coach-a" and "open for" in m.text]
    # It said "has been open for 1 days".
    assert notice.text == f"Blocker #{blocker.id} in Alpha has been open for 1 day: ALPHA-BLOCKER-TEXT"
    assert notice.title == f"Blocker #{blocker.id} open for 1 day — Alpha"


def test_each_city_sets_when_an_open_blocker_is_flagged(world: TestBot) -> None:
    with world.store() as store:
        for city in store.cities():
            city.nudge_after_days = 0
            city.stale_blocker_days = {"alpha": 3, "beta": 0, "gamma": 14}[city.slug]
            store.session.add(city)
        opened = store.session.exec(select(Blocker)).first().opened_at  # type: ignore[union-attr]
    inbox = Inbox(world.clock)
    tick(world, opened + timedelta(days=3, minutes=1), inbox)

    def flagged() -> set[str]:
        return {
            reply.text.split(" has been")[0].split(" in ")[1]
            for _a, _r, reply in inbox.received
            if "has been open" in reply.text
        }

    assert flagged() == {"Alpha"}
    tick(world, opened + timedelta(days=20), inbox)
    assert flagged() == {"Alpha", "Gamma"}  # Beta turned it off


class Timed:
    """An adapter whose platform takes `seconds` to answer each send; it notes when each began and
    ended, by recipient."""

    def __init__(self, platform: str, seconds: float) -> None:
        self.platform, self.seconds = platform, seconds
        self.spans: dict[str, list[tuple[float, float]]] = {}

    async def send(
        self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
    ) -> None:
        began = time.monotonic()
        await asyncio.sleep(self.seconds)
        self.spans.setdefault(recipient, []).append((began, time.monotonic()))


def test_rate_limit_spaces_one_channel_without_holding_up_another(testbot: TestBot) -> None:
    slack = Timed("slack", 0.0)
    now = testbot.clock.now()
    with testbot.store() as store:
        for channel in ("C0001", "C0002"):
            for n in range(3):
                store.enqueue(due_message(f"{channel}-{n}", f"slack:T0001:{channel}", now))
    deliverer = Deliverer(testbot.engine, {"slack": slack}, testbot.clock, RateLimiter({"slack": 0.15}))
    assert len(asyncio.run(deliverer.deliver_due()).sent) == 6
    stamps = {recipient: [began for began, _ended in spans] for recipient, spans in slack.spans.items()}
    for times in stamps.values():
        assert all(later - earlier >= 0.14 for earlier, later in itertools.pairwise(times))
    # Not held up behind the other: the channel that began second began before the first was done
    # (one channel after the other, it would begin after the first's last send, 0.3 s in).
    first, second = sorted(stamps.values(), key=min)
    assert min(second) < max(first)


def test_a_channel_s_next_send_waits_its_interval_from_when_the_last_was_answered(testbot: TestBot) -> None:
    """The platform counts arrivals: spaced from the start of a send that took a while to arrive, the
    next could arrive closer than the limit."""
    slack = Timed("slack", 0.1)
    now = testbot.clock.now()
    with testbot.store() as store:
        for n in range(3):
            store.enqueue(due_message(f"C0001-{n}", "slack:T0001:C0001", now))
    deliverer = Deliverer(testbot.engine, {"slack": slack}, testbot.clock, RateLimiter({"slack": 0.15}))
    assert len(asyncio.run(deliverer.deliver_due()).sent) == 3
    spans = slack.spans["slack:T0001:C0001"]
    assert all(later[0] - earlier[1] >= 0.14 for earlier, later in itertools.pairwise(spans))


runner_cli = CliRunner()


def test_tick_sends_a_reminder_once_and_reminders_list_shows_it(db_url: str) -> None:
    for args in (
        ["city", "add", "riverton", "--name", "Riverton", "--tz", "America/Chicago"],
        ["member", "add", "console:ana", "--city", "riverton"],
        ["session", "add", "--city", "riverton", "--start", "2026-12-01T10:00"],
        ["city", "set", "riverton", "--nudge-after", "0"],
    ):
        assert runner_cli.invoke(app, [*args, "--db", db_url]).exit_code == 0
    first = runner_cli.invoke(app, ["tick", "--now", "2026-11-30T16:00:00Z", "--db", db_url])
    assert first.exit_code == 0, first.stderr
    assert (
        "[to console:ana] Reminder: Coaching session" in first.stdout and "planned 1, sent 1" in first.stdout
    )
    again = runner_cli.invoke(app, ["tick", "--now", "2026-11-30T16:00:00Z", "--db", db_url])
    assert "Reminder" not in again.stdout and "planned 0, sent 0" in again.stdout
    listed = runner_cli.invoke(app, ["reminders", "list", "--city", "riverton", "--db", db_url])
    assert "reminder-1440" in listed.stdout and "sent" in listed.stdout


def test_rows_for_a_platform_without_an_adapter_expire_like_any_other(testbot: TestBot, db_url: str) -> None:
    city_with_session(testbot, "America/Chicago", "2026-11-24T10:00")
    with testbot.store() as store:
        admin.add_member(store, "whatsapp:+15550001111", "home", utc("2026-01-01T00:00"))
        home = store.city_by_slug("home")
        assert home is not None
        nudge = due_message("teams:T1:U1|nudge|x", "teams:T1:U1", utc("2026-11-30T16:00"), kind="nudge")
        nudge.city_id, nudge.expires_at = home.id, utc("2026-12-01T01:00")
        store.enqueue(nudge)
    inbox = Inbox(testbot.clock)  # console only: no WhatsApp or Teams adapter runs here
    tick(testbot, utc("2026-11-30T16:30"), inbox)  # 23.5 h before the session: the 24 h reminder
    tick(testbot, utc("2026-12-01T15:30"), inbox)  # the 1 h reminder; the 24 h one is of no use now
    tick(testbot, utc("2026-12-01T16:01"), inbox)  # the session began
    rows = {(r.recipient, r.kind): r for r in outbox(testbot)}
    waiting = [("whatsapp:+15550001111", "reminder-1440"), ("whatsapp:+15550001111", "reminder-60")]
    waiting.append(("teams:T1:U1", "nudge"))
    assert [(rows[w].status, rows[w].last_error) for w in waiting] == [("dropped", EXPIRED)] * 3
    assert [rows[("console:home-member", k)].status for k in ("reminder-1440", "reminder-60")] == ["sent"] * 2
    listed = runner_cli.invoke(app, ["reminders", "list", "--city", "home", "--db", db_url])
    assert listed.exit_code == 0 and listed.stdout.count("dropped") == 3, listed.stdout
    assert "pending" not in listed.stdout


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (
            ["--reminders", "48h,2h,15m", "--working-days", "sun-thu", "--quiet", "21-7"],
            "reminders 48h,2h,15m, nudge after 7 days at 10:00, working days mon,tue,wed,thu,sun, "
            "quiet 21:00–7:00, blockers flagged after 14 days",
        ),
        (
            ["--reminders", "none", "--nudge-after", "0", "--stale-after", "0"],
            "reminders off, nudges off, working days mon,tue,wed,thu,fri, quiet 20:00–8:00, blockers never "
            "flagged",
        ),
    ],
)
def test_city_set_changes_what_the_scheduler_sends(db_url: str, args: list[str], shown: str) -> None:
    runner_cli.invoke(app, ["city", "add", "home", "--name", "Home", "--tz", "UTC", "--db", db_url])
    result = runner_cli.invoke(app, ["city", "set", "home", *args, "--db", db_url])
    assert result.exit_code == 0 and shown in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reminders", "tomorrow"], "bad --reminders"),
        (["--working-days", "weekdays"], "bad --working-days"),
        (["--quiet", "late"], "bad --quiet"),
        (["--nudge-hour", "25"], "bad --nudge-hour"),
        (["--stale-after", "-1"], "bad --stale-after"),
    ],
)
def test_city_set_refuses_bad_values(db_url: str, args: list[str], message: str) -> None:
    runner_cli.invoke(app, ["city", "add", "home", "--name", "Home", "--tz", "UTC", "--db", db_url])
    result = runner_cli.invoke(app, ["city", "set", "home", *args, "--db", db_url])
    assert result.exit_code == 1 and message in result.stderr


async def test_scheduler_service_runs_a_pass_at_start_and_stops_after_the_pass_under_way(
    testbot: TestBot,
) -> None:
    from scheduler.service import SchedulerService

    city_with_session(testbot, "America/Chicago", "2026-11-24T10:00")
    testbot.clock.set(utc("2026-11-30T16:00"))
    sending, release = asyncio.Event(), asyncio.Event()

    class Slow:
        platform = "console"

        async def send(
            self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
        ) -> None:
            sending.set()
            await release.wait()

    service = SchedulerService(runner(testbot, Slow()), seconds=3600)  # type: ignore[arg-type]
    await service.start()
    await asyncio.wait_for(sending.wait(), 5)  # the first pass runs at once
    stopping = asyncio.create_task(service.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for the pass under way…
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert [row.status for row in outbox(testbot)] == ["sent"]  # …which finished its work


def test_a_pass_forgets_message_ids_older_than_a_month(world: TestBot) -> None:
    world.send("console:a1", "help", message_id="old-1")
    world.clock.set(world.clock.now() + timedelta(days=29))
    world.send("console:a1", "help", message_id="recent-1")
    tick(world, world.clock.now() + timedelta(days=2), Inbox(world.clock))
    assert world.send("console:a1", "help", message_id="recent-1") == []  # still remembered
    assert world.send("console:a1", "help", message_id="old-1") != []  # forgotten, so processed again


def test_a_pass_forgets_outbox_rows_sent_or_dropped_half_a_year_ago_and_keeps_the_rest(
    testbot: TestBot,
) -> None:
    """Sent and dropped rows older than KEEP_SENT go, with the platform ids they went out as, and so
    does a notice of a blocker since resolved; a failed row (the coaches' page counts it), one still to
    go, a notice of a blocker still open and anything younger stay."""
    now = testbot.clock.now()
    old, recent = now - KEEP_SENT - timedelta(hours=1), now - KEEP_SENT + timedelta(hours=1)
    with testbot.store() as store:
        admin.add_city(store, "home", "Home", "UTC", old, None, None, "en")
        city = store.city_by_slug("home")
        assert city is not None and city.id is not None
        # Blockers 2 and 5 stay open; 12, resolved, ends in 2: an id that only ends another's keeps nothing.
        opened = [
            store.add_blocker(Blocker(city_id=city.id, author="m", text="x", opened_at=old))
            for _ in range(12)
        ]
        for blocker in opened:
            if blocker.id not in (2, 5):
                store.resolve_blocker(blocker, "m", None, old)
        open_ids = [b.id for b in opened if b.status == "open"]
    assert open_ids == [2, 5]
    rows = {
        "sent-old": ("sent", "reminder-60", old),
        "dropped-old": ("dropped", "reminder-1440", old),
        "failed-old": ("failed", "nudge", old),
        "pending-old": ("pending", "reply", old),
        stale_key("console:coach", 2): ("sent", STALE_KIND, old),  # still open
        stale_key("console:coach", 5): ("dropped", STALE_KIND, old),  # still open
        stale_key("console:coach", 12): ("sent", STALE_KIND, old),  # resolved
        stale_key("console:other-coach", 11): ("sent", STALE_KIND, old),  # resolved
        stale_key("console:coach", 3): ("sent", STALE_KIND, recent),  # resolved, but recent
        "sent-recent": ("sent", "digest", recent),
    }
    with testbot.store() as store:
        for key, (status, kind, at) in rows.items():
            row = due_message(key, "whatsapp:+15550001", at, kind=kind)
            row.status, row.city_id = status, city.id
            store.enqueue(row)
        ids = {row.key: row.id for row in store.session.exec(select(OutboxMessage))}
        store.add_receipts([(ids["sent-old"], "whatsapp", ["SM-old"], old)])
        store.add_receipts([(ids["sent-recent"], "whatsapp", ["SM-recent"], recent)])
    runner(testbot)._plan()
    assert {row.key for row in outbox(testbot)} == {
        "failed-old",
        "pending-old",
        stale_key("console:coach", 2),
        stale_key("console:coach", 5),
        stale_key("console:coach", 3),
        "sent-recent",
    }
    with testbot.store() as store:
        assert store.sent_as("whatsapp", "SM-old") is None
        found = store.sent_as("whatsapp", "SM-recent")
        assert found is not None and found.key == "sent-recent"


def test_coaches_are_told_of_a_blocker_once_while_it_stays_open_however_long(world: TestBot) -> None:
    """Half a year on, the notices of a blocker since resolved are forgotten, and those of one still
    open are kept, so its coaches are not told of it a second time."""
    inbox = Inbox(world.clock)
    alpha = alpha_blocker_without_nudges(world)
    opened, alpha_id = alpha.opened_at, alpha.id
    tick(world, opened + timedelta(days=14, minutes=1), inbox)
    notices = stale_notices(inbox)
    assert len(notices) == 6  # Alpha's to 3 coaches, Beta's to 2, Gamma's to 1
    with world.store() as store:
        resolved = store.session.get(Blocker, alpha_id)
        assert resolved is not None
        store.resolve_blocker(resolved, "console:coach-a", None, world.clock.now())
    for day in range(15, 14 + KEEP_SENT.days + 30, 5):
        tick(world, opened + timedelta(days=day), inbox)
    assert stale_notices(inbox) == notices  # nobody told twice
    kept = [row for row in outbox(world) if row.kind == STALE_KIND]
    assert len(kept) == 3 and not [row for row in kept if row.key.endswith(f"|{alpha_id}")]


def test_a_delivery_report_for_a_row_being_forgotten_waits_and_then_finds_nothing(testbot: TestBot) -> None:
    """A platform's late word (a WhatsApp "read" can come months on) on a row another process is
    forgetting at that moment waits for the forgetting to commit and finds no row: no error, and the
    row is not written back."""
    old = testbot.clock.now() - KEEP_SENT - timedelta(days=1)
    with testbot.store() as store:
        row = due_message("sent-old", "whatsapp:+15550001", old)
        row.status = "sent"
        store.enqueue(row)
        assert row.id is not None
        store.add_receipts([(row.id, "whatsapp", ["SM-read-late"], old)])
    deliverer = Deliverer(testbot.engine, {}, testbot.clock, RateLimiter(intervals={}))
    deleted, go_on = threading.Event(), threading.Event()

    def hold_the_commit(connection: Any) -> None:
        writing = not connection.get_execution_options().get(READER)
        if writing and threading.current_thread() is forgetting:
            deleted.set()
            assert go_on.wait(10)

    found: list[bool] = []
    reporter = threading.Thread(
        target=lambda: found.append(deliverer._report("whatsapp", "SM-read-late", "read", None, None))
    )
    forgetting = threading.Thread(
        target=agenda.forget_sent, args=(testbot.engine, testbot.clock.now() - KEEP_SENT)
    )
    event.listen(testbot.engine, "commit", hold_the_commit)
    try:
        forgetting.start()
        assert deleted.wait(10)  # the row is deleted, not yet committed
        reporter.start()
        time.sleep(0.3)
        assert reporter.is_alive()  # waiting for the row's lock
    finally:
        go_on.set()
        forgetting.join(10)
        reporter.join(10)
        event.remove(testbot.engine, "commit", hold_the_commit)
    assert found == [False]
    assert outbox(testbot) == []


def test_two_replicas_forgetting_at_once_forget_each_row_once_and_neither_fails(testbot: TestBot) -> None:
    old = testbot.clock.now() - KEEP_SENT - timedelta(days=1)
    with testbot.store() as store:
        for n in range(1200):
            row = due_message(f"sent-{n}", "whatsapp:+15550001", old)
            row.status = "sent"
            store.enqueue(row)
        ids = [row.id for row in store.session.exec(select(OutboxMessage))]
        store.add_receipts([(id_, "whatsapp", [f"SM-{id_}"], old) for id_ in ids])  # type: ignore[misc]
    start = threading.Barrier(2)
    counts: list[int] = []

    def forget() -> None:
        start.wait()
        counts.append(agenda.forget_sent(testbot.engine, testbot.clock.now() - KEEP_SENT, batch=100))

    replicas = [threading.Thread(target=forget) for _ in range(2)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(30)
    assert len(counts) == 2 and sum(counts) == 1200
    assert outbox(testbot) == []
    with testbot.store() as store:
        assert store.sent_as("whatsapp", f"SM-{ids[0]}") is None


def test_a_city_quiet_for_a_year_is_nudged_once_a_stretch_though_old_nudges_are_forgotten(
    testbot: TestBot,
) -> None:
    """The longest quiet stretch a city may be given: each stretch's nudge goes once, though the rows
    of earlier ones are forgotten meanwhile; forgotten any sooner, a stretch would be nudged again."""
    quiet_city(testbot, nudge_after_days=NUDGE_AFTER_DAYS_MAX)
    with testbot.store() as store:
        # A calendar with no dates: nudges never end (the 2026–27 one ends them after 31 Mar 2027).
        store.save_program("open", {"cohort": "open", "phases": []}, utc("2026-01-01T00:00"))
    inbox = Inbox(testbot.clock)
    start = utc("2026-11-18T15:00")  # 10:00 in Bogotá, the day of the last update
    for day in range(0, 4 * NUDGE_AFTER_DAYS_MAX + 30, 3):
        tick(testbot, start + timedelta(days=day), inbox)
    sent = nudges(testbot, inbox)
    stretches = [(at - utc("2026-11-18T17:00")).days // NUDGE_AFTER_DAYS_MAX for at in sent]
    assert stretches == [1, 2, 3, 4]
    kept = [row.key for row in outbox(testbot) if row.kind == "nudge"]
    assert [key.rsplit(":", 1)[1] for key in kept] == ["3", "4"]  # the first two were forgotten


def test_every_write_of_a_pass_waits_its_turn_among_the_servers_writers(world: TestBot) -> None:
    """On SQLite a message that arrives during a pass is stored between two of the pass's writes, not
    after SQLite's busy handler has slept: the pass writes only while it holds the process's turn."""
    world.send("console:a1", "help", message_id="old-1")  # forgotten by the pass, a month on
    turns = Turns()
    deliverer = Deliverer(world.engine, {}, world.clock, RateLimiter(intervals={}), turns=turns)
    held: list[bool] = []

    def began(connection: Any) -> None:
        if not connection.get_execution_options().get(READER):
            held.append(turns._busy)

    event.listen(world.engine, "begin", began)
    try:
        world.clock.set(world.clock.now() + timedelta(days=31))
        report = PassRunner(world.engine, deliverer, world.clock)._plan()
    finally:
        event.remove(world.engine, "begin", began)
    assert report.planned  # digests, reminders, notices: written
    assert len(held) >= 3 and all(held)  # the forgetting, the claims and the writes, each in a turn
