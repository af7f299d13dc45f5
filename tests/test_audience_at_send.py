"""An unprompted message goes out only if its recipient may still see the cities it shows (SPEC,
"Cities see only their own data"), asked again when it is sent: a reminder, nudge, digest or coach
notice is addressed when it is planned, and may wait in the outbox (a platform down or rate limiting,
retried for up to ~1.5 hours; an adapter not running in this process; a Teams person not reachable
yet). Meanwhile an admin may bind the channel to another city or unbind it, move a member, or take a
coach off a city: what is queued for them about the old city is then dropped, not sent.

Every test drives the real paths (the dispatcher through `TestBot`, the planner and the one deliverer
through `PassRunner`) against the `world` of tests/conftest.py: alpha bound to slack:T0001:C0001,
beta, gamma, their members, coaches and sessions."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot import admin
from bot.core.inbox import REPLY_KIND, accept, handle_or_fail
from bot.core.messages import DeliveryError, InboundMessage, Reply
from bot.runtime.delivery import UNSEEN
from store.models import OutboxMessage, OutboxStatus, Role
from tests.conftest import TestBot, said
from tests.test_scheduler import Inbox, tick

ALPHA_CHANNEL = "slack:T0001:C0001"  # bound to alpha in the world
# Monday 30 Nov 2026 16:00 UTC: 24 hours before Alpha's weekly session (Tue 1 Dec 10:00 America/Chicago),
# when Alpha's 24-hour reminder is due for its channel (and, on the console, for its member a1).
ALPHA_REMINDER_DUE = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 30, 16, 5, tzinfo=UTC)  # past the retry of a send that failed at 16:00


def _to(inbox: Inbox, recipient: str) -> list[Reply]:
    return [reply for _at, who, reply in inbox.received if who == recipient]


def _dropped_as_unseen(bot: TestBot, recipient: str, kind_prefix: str) -> bool:
    """Whether a row of that kind for `recipient` was dropped because they may no longer see its city."""
    with bot.store() as store:
        rows = [r for r in store.session.exec(select(OutboxMessage)) if r.recipient == recipient]
    return any(
        r.kind.startswith(kind_prefix) and r.status == OutboxStatus.dropped and r.last_error == UNSEEN
        for r in rows
    )


def _shows(reply: Reply, *marks: str) -> bool:
    text = " ".join([reply.text, reply.title or "", *reply.items])
    return any(mark in text for mark in marks)


def _alpha_reminder_queued_while_slack_is_down(world: TestBot) -> tuple[Inbox, Inbox]:
    slack, console = Inbox(world.clock, "slack"), Inbox(world.clock, "console")
    slack.failing = DeliveryError("slack rate limited", retry_after=60)
    tick(world, ALPHA_REMINDER_DUE, slack, console)
    assert slack.received == []  # the reminder for Alpha's channel waits in the outbox for a retry
    slack.failing = None
    return slack, console


def test_rebound_channel_is_not_sent_the_old_citys_queued_reminder(world: TestBot) -> None:
    """The channel was Alpha's when Alpha's reminder was planned; an admin then binds it to Beta (the
    binding was wrong, or the channel changed hands). The channel is Beta's now and sees Beta only, yet
    the queued Alpha reminder (Alpha's session time, phase and open-blocker count) is posted in it."""
    slack, console = _alpha_reminder_queued_while_slack_is_down(world)
    with world.store() as store:
        _binding, before = admin.bind(store, ALPHA_CHANNEL, "beta", world.clock.now())
        assert before is not None and before.slug == "alpha"
    tick(world, LATER, slack, console)
    leaked = [r for r in _to(slack, ALPHA_CHANNEL) if _shows(r, "ALPHA", "Alpha")]
    assert leaked == [], f"Beta's channel was sent Alpha's data: {leaked[0].text!r}"
    assert _dropped_as_unseen(world, ALPHA_CHANNEL, "reminder")


def test_unbound_channel_is_not_sent_the_old_citys_queued_reminder(world: TestBot) -> None:
    """Un-bound, the channel is a shared conversation that sees no city's data; the queued Alpha
    reminder still goes to it."""
    slack, console = _alpha_reminder_queued_while_slack_is_down(world)
    with world.store() as store:
        assert admin.unbind(store, ALPHA_CHANNEL).slug == "alpha"
    tick(world, LATER, slack, console)
    leaked = [r for r in _to(slack, ALPHA_CHANNEL) if _shows(r, "ALPHA", "Alpha")]
    assert leaked == [], f"an unbound channel was sent Alpha's data: {leaked[0].text!r}"


def test_member_moved_to_another_city_is_not_sent_the_old_citys_queued_reminder(world: TestBot) -> None:
    """a1 hears Alpha's reminders directly (Alpha has no console channel). While the console is down,
    an admin moves a1 to Beta (remove, then add: the roster has no move). a1 is now a member of Beta
    only, and a member sees their own city only; the queued Alpha reminder still reaches them."""
    slack, console = Inbox(world.clock, "slack"), Inbox(world.clock, "console")
    console.failing = DeliveryError("console unreachable")
    tick(world, ALPHA_REMINDER_DUE, slack, console)
    assert console.received == []
    with world.store() as store:
        admin.remove_person(store, "console:a1", Role.member, world.clock.now())
        admin.add_member(store, "console:a1", "beta", world.clock.now(), "Ann, now of Beta")
    console.failing = None
    tick(world, LATER, slack, console)
    leaked = [r for r in _to(console, "console:a1") if _shows(r, "ALPHA", "Alpha")]
    assert leaked == [], f"Beta's member was sent Alpha's data: {leaked[0].text!r}"


def test_coach_taken_off_a_city_is_not_sent_its_queued_blocker_notice(world: TestBot) -> None:
    """Alpha's coaches are told of a new blocker, with its text. While the notice waits (the coach's
    platform down), an admin takes coach-ab off Alpha: coach-ab coaches Beta only and may no longer
    see Alpha, yet the queued notice carrying Alpha's blocker text reaches them."""
    console = Inbox(world.clock, "console")
    console.failing = DeliveryError("console unreachable")
    assert "Blocker #" in world.say("console:a1", "blocker: ALPHA-SECRET-PROCUREMENT-ISSUE")
    tick(world, world.clock.now(), console)
    with world.store() as store:
        admin.remove_person(store, "console:coach-ab", Role.coach, world.clock.now(), ["alpha"])
    console.failing = None
    tick(world, LATER, console)
    assert any(_shows(r, "ALPHA-SECRET") for r in _to(console, "console:coach-a"))  # still Alpha's coach
    leaked = [r for r in _to(console, "console:coach-ab") if _shows(r, "ALPHA-SECRET", "Alpha")]
    assert leaked == [], f"a coach of Beta only was sent Alpha's blocker: {leaked[0].text!r}"


def test_coach_taken_off_a_city_is_not_sent_a_queued_digest_showing_it(world: TestBot) -> None:
    """coach-ab's weekly digest (Monday 08:00 in Alpha's zone, 14:00 UTC) shows Alpha and Beta; it waits
    while the console is down, and coach-ab is taken off Alpha meanwhile. The digest, which shows
    Alpha's blocker, is dropped; coach-a's, whose cities are unchanged, goes out."""
    console = Inbox(world.clock, "console")
    console.failing = DeliveryError("console unreachable")
    tick(world, datetime(2026, 11, 30, 14, 0, tzinfo=UTC), console)
    with world.store() as store:
        admin.remove_person(store, "console:coach-ab", Role.coach, world.clock.now(), ["alpha"])
    console.failing = None
    tick(world, datetime(2026, 11, 30, 14, 5, tzinfo=UTC), console)
    assert [r.title for r in _to(console, "console:coach-a")].count("Weekly digest") == 1
    assert not [r for r in _to(console, "console:coach-ab") if r.title == "Weekly digest"]
    assert _dropped_as_unseen(world, "console:coach-ab", "digest")


# A reply held back by a failing platform is asked the rule again when it is retried: meanwhile an admin
# may have bound the channel it answers to another city, or taken the coach it answers off the city.
SLACK_MEMBER, SLACK_COACH = "slack:T0001:UALPHA", "slack:T0001:UCOACH"


def _reply_waits_for_a_retry(world: TestBot, message: InboundMessage) -> Inbox:
    """`message` handled as the server does (stored, then handled, its replies left for the
    deliverer), and a first attempt to send them that Slack refuses."""
    with world.store() as store:
        admin.add_member(store, SLACK_MEMBER, "alpha", world.clock.now(), "Ana of Alpha")
        admin.add_coach(store, SLACK_COACH, ["alpha", "beta"], world.clock.now(), "Coach of two")
    now = world.clock.now()
    with world.store() as store:
        inbox_id = accept(store, message, now).inbox_id
    assert inbox_id is not None
    handle_or_fail(world.engine, inbox_id, now)
    slack = Inbox(world.clock, "slack")
    slack.failing = DeliveryError("slack is down")
    tick(world, now, slack)
    assert slack.received == []
    slack.failing = None
    return slack


def _replies_dropped_as_unseen(bot: TestBot) -> list[str]:
    with bot.store() as store:
        rows = store.session.exec(select(OutboxMessage).where(OutboxMessage.kind == REPLY_KIND)).all()
    return [r.recipient for r in rows if r.status == OutboxStatus.dropped and r.last_error == UNSEEN]


@pytest.mark.parametrize("change", ["rebound", "unbound", "still-alpha"])
def test_a_held_back_reply_is_not_posted_in_a_channel_bound_to_another_city_since(
    world: TestBot, change: str
) -> None:
    """Alpha's member asks for Alpha's status in Alpha's channel; Slack fails the reply, and before the
    retry an admin binds the channel to Beta, or unbinds it (it was the wrong channel). Neither Beta's
    channel nor one that sees no city is sent Alpha's status; a channel still Alpha's is."""
    asked = said(SLACK_MEMBER, "/cda status", world.clock.now(), conversation=ALPHA_CHANNEL)
    slack = _reply_waits_for_a_retry(world, asked)
    with world.store() as store:
        if change == "rebound":
            admin.bind(store, ALPHA_CHANNEL, "beta", world.clock.now())
        elif change == "unbound":
            admin.unbind(store, ALPHA_CHANNEL)
    tick(world, world.clock.now() + timedelta(minutes=1), slack)
    told = [r for r in _to(slack, ALPHA_CHANNEL) if _shows(r, "ALPHA", "Alpha")]
    if change != "still-alpha":
        assert told == [], f"a channel no longer Alpha's was sent Alpha's status: {told[0].text!r}"
        assert _replies_dropped_as_unseen(world) == [ALPHA_CHANNEL]
    else:
        assert told and _replies_dropped_as_unseen(world) == []


@pytest.mark.parametrize("taken_off", [True, False], ids=["taken-off-alpha", "still-coach"])
def test_a_held_back_reply_is_not_sent_to_a_coach_taken_off_its_city_since(
    world: TestBot, taken_off: bool
) -> None:
    """A coach of Alpha and Beta asks for their cities' status in a direct message; Slack fails the
    reply, and before the retry an admin takes them off Alpha: Alpha's status is not sent to them."""
    slack = _reply_waits_for_a_retry(world, said(SLACK_COACH, "/cda status", world.clock.now()))
    if taken_off:
        with world.store() as store:
            admin.remove_person(store, SLACK_COACH, Role.coach, world.clock.now(), ["alpha"])
    tick(world, world.clock.now() + timedelta(minutes=1), slack)
    told = [r for r in _to(slack, SLACK_COACH) if _shows(r, "ALPHA", "Alpha")]
    if taken_off:
        assert told == [], f"a coach of Beta only was sent Alpha's status: {told[0].text!r}"
        assert _replies_dropped_as_unseen(world) == [SLACK_COACH]
    else:
        assert told and _replies_dropped_as_unseen(world) == []


@pytest.mark.parametrize("moved", [False, True], ids=["still-alpha", "moved-to-beta"])
def test_a_held_back_reply_in_a_direct_messages_own_conversation_is_sent_while_the_asker_sees_it(
    world: TestBot, moved: bool
) -> None:
    """A Slack DM is a conversation of its own (D…), neither a channel bound to a city nor a person: only
    the asker is in it, and their answer goes there after a retry, if they may still see it: not once
    an admin has moved them to Beta."""
    asked = InboundMessage(
        platform="slack",
        message_id="dm-1",
        conversation="slack:T0001:D0001",
        sender=SLACK_MEMBER,
        text="/cda status",
        received_at=world.clock.now(),
        direct=True,
    )
    slack = _reply_waits_for_a_retry(world, asked)
    if moved:
        with world.store() as store:
            admin.remove_person(store, SLACK_MEMBER, Role.member, world.clock.now())
            admin.add_member(store, SLACK_MEMBER, "beta", world.clock.now(), "Ana, now of Beta")
    tick(world, world.clock.now() + timedelta(minutes=1), slack)
    told = [r for r in _to(slack, "slack:T0001:D0001") if _shows(r, "ALPHA", "Alpha")]
    if moved:
        assert told == [], f"Beta's member was sent Alpha's status in their DM: {told[0].text!r}"
        assert _replies_dropped_as_unseen(world) == ["slack:T0001:D0001"]
    else:
        assert told and _replies_dropped_as_unseen(world) == []
