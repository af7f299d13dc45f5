"""Unprompted messages leave through the outbox once, are retried with backoff, and fail visibly."""

import asyncio
import time
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from bot.core.inbox import REPLY_KIND, Claiming, Handled, accept, handle_all, handle_or_fail, reclaim_replies
from bot.core.messages import DeliveryError, Reply
from bot.runtime import delivery
from bot.runtime.delivery import LEASE, MAX_ATTEMPTS, Deliverer
from bot.runtime.hub import Hub
from store.models import OutboxMessage, OutboxStatus
from store.repo import Claim, Store
from tests.conftest import TestBot, due_message, said, until
from tests.test_scheduler import Inbox, tick


class Recorder:
    """An adapter that records what it was asked to send, failing as told."""

    def __init__(self, platform: str = "console", fail_with: Exception | None = None) -> None:
        self.platform = platform
        self.fail_with = fail_with
        self.sent: list[tuple[str, Reply]] = []

    async def send(
        self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
    ) -> None:
        await asyncio.sleep(0)  # let racing deliverers interleave
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((recipient, reply))


async def _run_until_sent(deliverer: Deliverer, adapter: Recorder, count: int) -> None:
    """Run the deliverer's loop until `adapter` has sent `count` messages, or five seconds pass."""
    deliverer.start()
    try:
        for _ in range(100):
            if len(adapter.sent) >= count:
                break
            await asyncio.sleep(0.05)
    finally:
        await deliverer.stop(5)


def _rows(bot: TestBot) -> list[OutboxMessage]:
    with bot.store() as store:
        unprompted = select(OutboxMessage).where(OutboxMessage.kind != REPLY_KIND)
        return list(store.session.exec(unprompted.order_by(OutboxMessage.recipient)))


async def test_blocker_notice_is_delivered_once(world: TestBot) -> None:
    world.say("console:a1", "blocker: the vendor went silent")
    adapter = Recorder()
    deliverer = Deliverer(world.engine, {"console": adapter}, world.clock)
    first = await deliverer.deliver_due()
    second = await deliverer.deliver_due()
    assert len(first.sent) == 9  # the world's six notices (3 + 2 + 1 coaches) and three for this one
    assert second.sent == []
    recipients = [r for r, reply in adapter.sent if "vendor went silent" in reply.text]
    assert sorted(recipients) == ["console:coach-a", "console:coach-ab", "console:coach-all"]
    assert {row.status for row in _rows(world)} == {"sent"}
    assert all(row.sent_at == world.clock.now() for row in _rows(world))


async def test_recipient_without_adapter_stays_queued(world: TestBot) -> None:
    with world.store() as store:
        from bot import admin

        admin.add_coach(store, "slack:T0001:U0COACH", ["alpha"], world.clock.now())
    world.say("console:a1", "blocker: queued for slack")
    await Deliverer(world.engine, {"console": Recorder()}, world.clock).deliver_due()
    slack = [row for row in _rows(world) if row.recipient.startswith("slack:")]
    assert [row.status for row in slack] == ["pending"]
    slack_adapter = Recorder("slack")
    await Deliverer(world.engine, {"slack": slack_adapter}, world.clock).deliver_due()
    assert [r for r, _ in slack_adapter.sent] == ["slack:T0001:U0COACH"]


async def test_a_deliverer_with_no_platforms_takes_nothing_and_builds_no_empty_or(
    world: TestBot,
) -> None:
    world.say("console:a1", "blocker: nobody here can send it")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty OR in a query is deprecated, and soon an error
        result = await Deliverer(world.engine, {}, world.clock).deliver_due()
    assert result.sent == [] and {row.status for row in _rows(world)} == {"pending"}


async def test_failure_is_retried_with_backoff_then_marked_failed(world: TestBot) -> None:
    failing = Recorder(fail_with=DeliveryError("rate limited", retry_after=90))
    deliverer = Deliverer(world.engine, {"console": failing}, world.clock)
    report = await deliverer.deliver_due()
    assert len(report.retrying) == 6 and report.sent == []
    row = _rows(world)[0]
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == world.clock.now() + timedelta(seconds=90)  # Retry-After beats 30 s backoff
    assert (await deliverer.deliver_due()).retrying == []  # not due yet
    for _ in range(MAX_ATTEMPTS - 1):
        world.clock.set(world.clock.now() + timedelta(hours=2))
        report = await deliverer.deliver_due()
    assert len(report.failed) == 6
    row = _rows(world)[0]
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert row.last_error == "rate limited"


async def test_permanent_error_fails_at_once(world: TestBot) -> None:
    deliverer = Deliverer(
        world.engine, {"console": Recorder(fail_with=DeliveryError("gone", permanent=True))}, world.clock
    )
    assert len((await deliverer.deliver_due()).failed) == 6


async def test_expired_message_is_dropped_not_sent(world: TestBot) -> None:
    world.clock.set(world.clock.now() + timedelta(days=15))
    adapter = Recorder()
    report = await Deliverer(world.engine, {"console": adapter}, world.clock).deliver_due()
    assert len(report.dropped) == 6 and adapter.sent == []


async def test_racing_deliverers_send_each_message_once(world: TestBot) -> None:
    adapters = [Recorder(), Recorder(), Recorder()]
    deliverers = [Deliverer(world.engine, {"console": a}, world.clock) for a in adapters]
    await asyncio.gather(*(d.deliver_due() for d in deliverers))
    sent = [(recipient, reply.text) for a in adapters for recipient, reply in a.sent]
    assert len(sent) == 6 and len(set(sent)) == 6


async def test_deliverers_on_separate_connections_race_many_times_and_send_each_once(
    testbot: TestBot, db_url: str
) -> None:
    from store.db import make_engine

    engines = [make_engine(db_url) for _ in range(3)]
    adapters = [Recorder() for _ in engines]
    deliverers = [
        Deliverer(engine, {"console": a}, testbot.clock) for engine, a in zip(engines, adapters, strict=True)
    ]
    now = testbot.clock.now()
    for round_ in range(10):
        with testbot.store() as store:
            for n in range(20):
                store.enqueue(due_message(f"race-{round_}-{n}", f"console:r{n}", now, f"{round_}-{n}"))
        await asyncio.gather(*(d.deliver_due() for d in deliverers))
    sent = [reply.text for a in adapters for _r, reply in a.sent]
    assert len(sent) == 200 and len(set(sent)) == 200
    assert {row.status for row in _rows(testbot)} == {"sent"}
    for engine in engines:
        engine.dispose()


async def test_a_countdown_is_written_when_the_reply_is_sent(world: TestBot) -> None:
    start = world.clock.now() + timedelta(minutes=60)
    reminder = Reply(text="Coaching starts {soon}.", items=["{soon}"], starts_at=start, language="es")
    with world.store() as store:
        row = due_message("countdown", "console:a1", world.clock.now())
        row.payload = reminder.model_dump(mode="json")
        store.enqueue(row)
    adapter = Recorder()
    world.clock.set(world.clock.now() + timedelta(minutes=8))  # planned at one pass, sent later
    await Deliverer(world.engine, {"console": adapter}, world.clock).deliver_due()
    [(_, sent)] = [(r, reply) for r, reply in adapter.sent if "Coaching" in reply.text]
    assert sent.text == "Coaching starts en 52 minutos." and sent.items == ["en 52 minutos"]


async def test_a_claim_whose_commit_went_through_unheard_is_put_back_and_sent_without_waiting_out_the_lease(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database commits the claim and goes away before saying so: the deliverer cannot know it
    holds the rows. The clock stands still here, so a lease would never run out to free them."""
    world.say("console:a1", "blocker: the vendor went silent")
    claim_due, unheard = Store.claim_due, []

    def claim_then_lose_the_answer(store: Store, *args: Any, **kwargs: Any) -> list[OutboxMessage]:
        rows = claim_due(store, *args, **kwargs)
        if not unheard and rows:
            unheard.extend(rows)

            def lost(_session: Any) -> None:
                raise OperationalError("COMMIT", {}, ConnectionResetError("the server closed the connection"))

            event.listen(store.session, "after_commit", lost, once=True)
        return rows

    monkeypatch.setattr(Store, "claim_due", claim_then_lose_the_answer)
    adapter = Recorder()
    deliverer = Deliverer(world.engine, {"console": adapter}, world.clock)
    await _run_until_sent(deliverer, adapter, 9)
    assert len(unheard) == 9  # the first claim took every row, committed, and was not heard
    rows = _rows(world)
    assert len(adapter.sent) == len(rows) == 9 and {row.status for row in rows} == {"sent"}  # each once
    assert {row.attempts for row in rows} == {1}  # the unheard claim was not counted as an attempt


class SlowRecorder(Recorder):
    """Takes a while over each send, as a platform's API does."""

    def __init__(self, seconds: float = 0.05) -> None:
        super().__init__()
        self.seconds = seconds

    async def send(
        self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
    ) -> None:
        await asyncio.sleep(self.seconds)
        await super().send(recipient, reply, reference, context)


def _database_away_for_finishing(monkeypatch: pytest.MonkeyPatch, times: float) -> list[int]:
    """Recording a send fails `times` times (the database away), then goes through; the tries made."""
    tries = [0]
    real = Deliverer._finish

    def finish(deliverer: Deliverer, outcomes: list[Any]) -> None:
        tries[0] += 1
        if tries[0] <= times:
            raise OperationalError("UPDATE", {}, ConnectionResetError("the server closed the connection"))
        real(deliverer, outcomes)

    monkeypatch.setattr(Deliverer, "_finish", finish)
    monkeypatch.setattr(delivery, "record_pause", lambda _: 0.01)
    return tries


async def test_a_reminder_whose_key_names_no_session_is_sent_as_it_is(testbot: TestBot) -> None:
    """A reminder row written by hand (an operator's, a test's) has no session in its key to check it
    against: it goes out as written, rather than fail its lane on the key."""
    with testbot.store() as store:
        store.enqueue(
            due_message("by-hand|1", "console:ana", testbot.clock.now(), "see you at 10", "reminder-60")
        )
    adapter = Recorder()
    report = await Deliverer(testbot.engine, {"console": adapter}, testbot.clock).deliver_due()
    assert len(report.sent) == 1 and [reply.text for _, reply in adapter.sent] == ["see you at 10"]


async def test_a_one_off_round_keeps_recording_a_send_through_a_short_outage_so_it_is_not_sent_again(
    testbot: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cda-bot tick` sends a reminder, then the database is away for a few seconds: the round goes on
    trying to record it while the row is still its own, rather than give up after three tries and leave
    it `sending`, for the server to send again once the lease ran out."""
    with testbot.store() as store:
        store.enqueue(due_message("tick|1", "console:ana", testbot.clock.now(), "your reminder"))
    tries = _database_away_for_finishing(monkeypatch, 5)
    adapter = Recorder()
    report = await Deliverer(testbot.engine, {"console": adapter}, testbot.clock).deliver_due()
    assert len(report.sent) == 1 and tries[0] == 6
    with testbot.store() as store:
        [row] = store.session.exec(select(OutboxMessage)).all()
        assert row.status == OutboxStatus.sent
    testbot.clock.set(testbot.clock.now() + LEASE + timedelta(seconds=5))
    assert (await Deliverer(testbot.engine, {"console": adapter}, testbot.clock).deliver_due()).sent == []
    assert len(adapter.sent) == 1


async def test_a_one_off_round_gives_up_recording_once_its_patience_is_spent(
    testbot: TestBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a `tick` that hangs for ever on a database that stays away: it ends with the error, and
    says the message may go out again."""
    with testbot.store() as store:
        store.enqueue(due_message("tick|2", "console:ana", testbot.clock.now(), "your reminder"))
    tries = _database_away_for_finishing(monkeypatch, float("inf"))
    monkeypatch.setattr(delivery, "RECORD_PATIENCE", 0.2)
    with pytest.raises(OperationalError):
        await Deliverer(testbot.engine, {"console": Recorder()}, testbot.clock).deliver_due()
    assert tries[0] > 3
    assert "delivery not recorded: it may be sent again" in caplog.text


async def test_lanes_that_were_full_wake_the_loop_as_they_empty_instead_of_leaving_the_rest_to_the_poll(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst bigger than the lanes hold (a Monday's digests): the rest is claimed as soon as there is
    room, not at the next poll, which here would come only after the test has given up."""
    monkeypatch.setattr(delivery, "MAX_IN_FLIGHT", 4)
    monkeypatch.setattr(delivery, "POLL_SECONDS", 60.0)
    world.say("console:a1", "blocker: the vendor went silent")
    adapter = SlowRecorder()
    deliverer = Deliverer(world.engine, {"console": adapter}, world.clock)
    await _run_until_sent(deliverer, adapter, 9)
    assert len(adapter.sent) == 9
    assert {row.status for row in _rows(world)} == {"sent"}


async def test_replies_handled_here_still_go_straight_to_lanes_the_loop_has_filled_up_to_a_bound(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written for a claim, a reply would wait behind every row due before it: past what the loop
    claims, replies handled here still have room, up to a bound."""
    monkeypatch.setattr(delivery, "MAX_IN_FLIGHT", 4)
    world.say("console:a1", "blocker: the vendor went silent")
    deliverer = Deliverer(world.engine, {"console": SlowRecorder(seconds=2.0)}, world.clock)
    deliverer.start()
    try:
        async with asyncio.timeout(5):
            while deliverer.in_flight < 4:
                await asyncio.sleep(0.01)
        assert deliverer.claiming() is not None
        deliverer.take(
            [
                OutboxMessage(
                    id=1000 + n,
                    key=f"k{n}",
                    recipient=f"console:r{n}",
                    kind="x",
                    due_at=world.clock.now(),
                    next_attempt_at=world.clock.now(),
                    created_at=world.clock.now(),
                )
                for n in range(4)
            ]
        )
        assert deliverer.in_flight >= 8 and deliverer.claiming() is None  # the bound
    finally:
        await deliverer.stop(0.1)


class Overlapping(Recorder):
    """Takes a while over each send, noting how many were in flight at once, in all and per recipient."""

    def __init__(self, platform: str, seconds: float = 0.1) -> None:
        super().__init__(platform)
        self.seconds = seconds
        self.in_flight: list[str] = []
        self.most = 0
        self.overlapped: list[str] = []  # recipients sent to while a send to them was in flight

    async def send(
        self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
    ) -> None:
        if recipient in self.in_flight:
            self.overlapped.append(recipient)
        self.in_flight.append(recipient)
        self.most = max(self.most, len(self.in_flight))
        try:
            await asyncio.sleep(self.seconds)
            self.sent.append((recipient, reply))
        finally:
            self.in_flight.remove(recipient)


async def test_a_whatsapp_sender_keeps_sends_to_different_numbers_in_flight_never_two_to_one(
    testbot: TestBot,
) -> None:
    """Twilio counts a sender's messages a second, not its sends in flight: one at a time, each waiting
    for the platform's answer, a burst from the bot's number would go at a fraction of its rate."""
    now = testbot.clock.now()
    numbers = [f"whatsapp:+1555000{n:04d}" for n in range(12)]
    with testbot.store() as store:
        for number in numbers:
            for n in range(2):  # one after another, as a pass writes them
                store.enqueue(due_message(f"{number}-{n}", number, now, f"{number} {n}"))
    adapter = Overlapping("whatsapp")
    deliverer = Deliverer(testbot.engine, {"whatsapp": adapter}, testbot.clock)
    await _run_until_sent(deliverer, adapter, 24)
    assert len(adapter.sent) == 24 and adapter.overlapped == []
    assert adapter.most == delivery.SHARED_LANE_SENDS
    for number in numbers:  # each number's in the order they were written
        assert [reply.text for to, reply in adapter.sent if to == number] == [f"{number} 0", f"{number} 1"]


class FailingFor(Overlapping):
    """Refuses every send to one recipient, as a platform refuses a number it is rate limiting."""

    def __init__(self, platform: str, refused: str) -> None:
        super().__init__(platform, seconds=0.02)
        self.refused = refused

    async def send(
        self, recipient: str, reply: Reply, reference: dict[str, Any] | None, context: Any = None
    ) -> None:
        if recipient == self.refused:
            await asyncio.sleep(0.02)
            raise DeliveryError("rate limited", retry_after=60)
        await super().send(recipient, reply, reference, context)


async def test_a_send_refused_among_those_in_flight_is_retried_later_and_the_rest_go(
    testbot: TestBot,
) -> None:
    now = testbot.clock.now()
    numbers = [f"whatsapp:+1555000{n:04d}" for n in range(10)]
    with testbot.store() as store:
        for number in numbers:
            store.enqueue(due_message(number, number, now, number))
    adapter = FailingFor("whatsapp", numbers[3])
    deliverer = Deliverer(testbot.engine, {"whatsapp": adapter}, testbot.clock)
    await _run_until_sent(deliverer, adapter, 9)
    assert sorted(to for to, _ in adapter.sent) == sorted(set(numbers) - {numbers[3]})
    rows = {row.recipient: row for row in _rows(testbot)}
    refused = rows.pop(numbers[3])
    assert (refused.status, refused.attempts, refused.last_error) == ("pending", 1, "rate limited")
    assert refused.next_attempt_at == now + timedelta(seconds=60)
    assert {row.status for row in rows.values()} == {"sent"}


async def test_a_conversation_s_sends_go_one_at_a_time(testbot: TestBot) -> None:
    now = testbot.clock.now()
    with testbot.store() as store:
        for n in range(3):
            store.enqueue(due_message(f"c-{n}", "console:r1", now, str(n)))
    adapter = Overlapping("console", seconds=0.02)
    await _run_until_sent(Deliverer(testbot.engine, {"console": adapter}, testbot.clock), adapter, 3)
    assert adapter.most == 1 and [reply.text for _, reply in adapter.sent] == ["0", "1", "2"]


@pytest.mark.parametrize("recipient", ["console:r1", "whatsapp:+15550001111"])
async def test_a_reply_goes_before_what_was_queued_ahead_of_it_to_the_same_limit(
    testbot: TestBot, recipient: str
) -> None:
    """Someone who just wrote is waiting for the answer; a reminder can wait a moment."""
    now = testbot.clock.now()
    platform = recipient.split(":")[0]
    with testbot.store() as store:
        for n in range(3):
            store.enqueue(
                due_message(f"reminder-{n}", recipient, now - timedelta(minutes=1), f"reminder {n}")
            )
        store.enqueue(due_message("reply", recipient, now, "reply", kind=REPLY_KIND))
    adapter = Overlapping(platform, seconds=0.01)
    await _run_until_sent(Deliverer(testbot.engine, {platform: adapter}, testbot.clock), adapter, 4)
    assert [reply.text for _, reply in adapter.sent] == ["reply", "reminder 0", "reminder 1", "reminder 2"]


def test_putting_back_an_unheard_claim_leaves_a_row_another_deliverer_took_since(world: TestBot) -> None:
    world.say("console:a1", "blocker: the vendor went silent")
    now = world.clock.now()
    with world.store() as store:
        unheard = store.claim_due(now, ["console"], LEASE, limit=100)
    with world.store() as store:
        # The lease ran out and another deliverer took the first row; the others are still as claimed.
        taken = store.claim_due(now + LEASE + LEASE, ["console"], LEASE, limit=1)
        assert [row.id for row in taken] == [unheard[0].id]
    with world.store() as store:
        claims = [Claim(row.id, row.attempts, row.next_attempt_at) for row in unheard]  # type: ignore[arg-type]
        assert store.release_claims(claims, now) == len(unheard) - 1 > 0
    by_id = {row.id: row for row in _rows(world)}
    assert (by_id[unheard[0].id].status, by_id[unheard[0].id].attempts) == (OutboxStatus.sending, 2)
    assert {(by_id[row.id].status, by_id[row.id].attempts) for row in unheard[1:]} == {
        (OutboxStatus.pending, 0)
    }


async def test_a_send_the_database_failed_before_is_put_back_by_the_next_claim(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unprompted message reads how to reach its recipient before it is sent; the database fails
    that read once. The clock stands still here, so a lease would never run out to free the row."""
    world.say("console:a1", "blocker: the vendor went silent")
    reachable, failed = Deliverer._reachable, []

    def fails_once(
        deliverer: Deliverer, recipient: str, cities: set[int], *more: Any
    ) -> tuple[dict[str, Any] | None, str | None]:
        if not failed:
            failed.append(recipient)
            raise OperationalError("SELECT", {}, ConnectionResetError("the server closed the connection"))
        return reachable(deliverer, recipient, cities, *more)

    monkeypatch.setattr(Deliverer, "_reachable", fails_once)
    adapter = Recorder()
    deliverer = Deliverer(world.engine, {"console": adapter}, world.clock)
    deliverer.start()

    async def sent(count: int) -> None:
        for _ in range(100):
            if len(adapter.sent) >= count:
                return
            await asyncio.sleep(0.05)

    try:
        await sent(8)
        deliverer.wake()  # as anything newly queued does: the next claim
        await sent(9)
    finally:
        await deliverer.stop(5)
    rows = _rows(world)
    assert len(adapter.sent) == len(rows) == 9 and {row.status for row in rows} == {"sent"}
    assert failed[0] in [recipient for recipient, _ in adapter.sent]
    assert {row.attempts for row in rows} == {1}


async def test_a_send_recorded_after_an_outage_longer_than_its_lease_is_not_claimed_back_and_sent_again(
    testbot: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform takes a message and the database goes away before it is recorded, for longer than
    the lease (a PostgreSQL failover), renewing failing too: in the database the row is `sending` under
    a lease that ran out. When the database is back, the claim (tried every second) comes before the
    record's next try (seconds apart by then). Found by an audit: the claim took the row back as a dead
    deliverer's and queued it behind the send being recorded, and it went out twice from one process."""
    with testbot.store() as store:
        store.enqueue(due_message("outage|1", "console:ana", testbot.clock.now(), "your reminder"))
    database = ("_finish", "_extend", "_claim_and_peek", "_parts_sent", "_reference")  # all it asks of it
    away: set[str] = set()
    answered: Counter[str] = Counter()
    lost = OperationalError("SELECT 1", {}, ConnectionResetError("the server closed the connection"))
    for name in database:

        def through(
            deliverer: Deliverer,
            *args: Any,
            _name: str = name,
            _real: Any = getattr(Deliverer, name),
            **kw: Any,
        ) -> Any:
            if _name in away:
                raise lost
            result = _real(deliverer, *args, **kw)
            answered[_name] += 1
            return result

        monkeypatch.setattr(Deliverer, name, through)

    class TakenThenTheDatabaseGoes(Recorder):
        async def send(self, *args: Any, **kwargs: Any) -> None:
            await super().send(*args, **kwargs)
            if len(self.sent) == 1:
                away.update(database)

    adapter = TakenThenTheDatabaseGoes()
    deliverer = Deliverer(testbot.engine, {"console": adapter}, testbot.clock)
    deliverer.start()
    try:
        await until(lambda: len(adapter.sent) == 1)
        testbot.clock.set(testbot.clock.now() + LEASE + timedelta(seconds=5))  # the outage outlasts the lease
        claims = answered["_claim_and_peek"]
        away.discard("_claim_and_peek")  # the database is back, and the claim goes first
        deliverer.wake()
        await until(lambda: answered["_claim_and_peek"] > claims)
        away.clear()
        await until(lambda: deliverer.in_flight == 0, seconds=10)  # recorded, and whatever follows that
    finally:
        await deliverer.stop(5)
    assert [reply.text for _, reply in adapter.sent] == ["your reminder"]
    (row,) = _rows(testbot)
    assert (row.status, row.attempts) == (OutboxStatus.sent, 1)


async def test_an_outcome_recorded_after_another_deliverer_took_the_row_over_leaves_what_that_one_did(
    testbot: TestBot, caplog: pytest.LogCaptureFixture
) -> None:
    """A send recorded only after its lease ran out (the database was away for longer, say) finds its
    row claimed by another deliverer, as a dead one's, and tried again: that try's outcome stands."""
    now = testbot.clock.now()
    with testbot.store() as store:
        store.enqueue(due_message("late|1", "console:ana", now, "your reminder"))
    sending, go_on = asyncio.Event(), asyncio.Event()

    class Stalled(Recorder):
        async def send(self, *args: Any, **kwargs: Any) -> None:
            sending.set()
            await go_on.wait()
            await super().send(*args, **kwargs)

    late = asyncio.create_task(Deliverer(testbot.engine, {"console": Stalled()}, testbot.clock).deliver_due())
    await sending.wait()
    testbot.clock.set(now + LEASE + timedelta(seconds=1))
    other = Deliverer(testbot.engine, {"console": Recorder(fail_with=DeliveryError("busy"))}, testbot.clock)
    retrying = (await other.deliver_due()).retrying
    go_on.set()
    assert (await late).sent == retrying != []
    (row,) = _rows(testbot)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.pending, 2, "busy")
    assert row.next_attempt_at > testbot.clock.now()
    assert "outcome not recorded" in caplog.text


# -- replies handled in this process go straight to its deliverer --------------------------------------
def _member(bot: TestBot) -> None:
    from bot import admin

    with bot.store() as store:
        admin.add_city(store, "home", "Home", "America/Chicago", bot.clock.now(), None, "implementation")
        admin.add_member(store, "console:ana", "home", bot.clock.now())


def _replies(bot: TestBot) -> list[OutboxMessage]:
    with bot.store() as store:
        return list(store.session.exec(select(OutboxMessage).where(OutboxMessage.kind == REPLY_KIND)))


def _handled(bot: TestBot, text: str, claiming: Claiming) -> Handled:
    """Ana's message, stored and then handled with `claiming`, each in a transaction of its own."""
    _member(bot)
    now = bot.clock.now()
    with bot.store() as store:
        accepted = accept(store, said("console:ana", text, now), now)
    assert accepted.inbox_id is not None
    with bot.store() as store:
        return handle_all(store, [accepted.inbox_id], now, claiming)


async def test_a_reply_handled_here_is_sent_by_this_deliverer_without_a_claim(
    testbot: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handling writes the reply as claimed by the process's deliverer, which sends it once the
    transaction commits: no claim of its own, a write (and on SQLite a turn) fewer per message."""
    _member(testbot)
    claims: list[int] = []
    claim = Deliverer._claim_and_peek

    def counted(deliverer: Deliverer, *args: Any, **kwargs: Any) -> Any:
        claims.append(1)
        return claim(deliverer, *args, **kwargs)

    monkeypatch.setattr(Deliverer, "_claim_and_peek", counted)
    adapter = Recorder()
    hub = Hub(testbot.engine, testbot.clock)
    hub.register(adapter)
    await hub.start()
    try:
        async with asyncio.timeout(5):
            while not claims:  # the loop's first look, which finds nothing
                await asyncio.sleep(0.01)
        assert await hub.accept(said("console:ana", "update: the intake form is live"))
        async with asyncio.timeout(5):
            while not adapter.sent:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # time for a claim, were one coming
        assert claims == [1]  # the first look only
    finally:
        await hub.stop(5)
    assert "Update #1 recorded" in adapter.sent[0][1].text
    (row,) = _replies(testbot)
    assert (row.status, row.attempts) == (OutboxStatus.sent, 1)


async def test_a_reply_claimed_by_a_process_that_died_goes_out_from_another_once_its_lease_runs_out(
    testbot: TestBot,
) -> None:
    now = testbot.clock.now()
    handled = _handled(testbot, "update: written, never sent", Claiming(frozenset({"console"}), LEASE))
    assert len(handled.claimed) == 1 and handled.waiting == 0
    # The process that claimed it died before `take`: another deliverer leaves it until the lease ends.
    adapter = Recorder()
    other = Deliverer(testbot.engine, {"console": adapter}, testbot.clock)
    assert (await other.deliver_due()).sent == []
    testbot.clock.set(now + LEASE + timedelta(seconds=1))
    assert (await other.deliver_due()).sent == [handled.claimed[0].id]
    assert (await other.deliver_due()).sent == []
    assert len(adapter.sent) == 1 and "Update #1 recorded" in adapter.sent[0][1].text
    (row,) = _replies(testbot)
    assert (row.status, row.attempts) == (OutboxStatus.sent, 2)


async def test_replies_written_as_a_claim_are_found_again_under_that_very_lease_only(
    testbot: TestBot,
) -> None:
    """What the intake reads after a handling whose commit it never heard of: the replies to those
    messages still held under the lease it wrote, leased again; not another message's (whose id a
    LIKE pattern would match), nor under another lease, nor once they have gone out."""
    _member(testbot)
    now = testbot.clock.now()
    claiming = Claiming(frozenset({"console"}), LEASE)
    with testbot.store() as store:
        messages = [said("console:ana", f"update: {n}", now, message_id=n) for n in ("a_1", "ab1")]
        inbox_ids = [accept(store, message, now).inbox_id for message in messages]
    with testbot.store() as store:
        claimed = {row.key: row for row in handle_all(store, inbox_ids, now, claiming).claimed}
    assert len(claimed) == 2
    relet = now + timedelta(seconds=5) + LEASE
    with testbot.store() as store:
        assert reclaim_replies(store, [inbox_ids[0]], [now + LEASE + timedelta(seconds=1)], relet) == []
    with testbot.store() as store:
        (row,) = reclaim_replies(store, [inbox_ids[0]], [now, now + LEASE], relet)
    mine = claimed[f"{REPLY_KIND}|console|a_1|0"]
    assert (row.id, row.status, row.attempts, row.next_attempt_at) == (
        mine.id,
        OutboxStatus.sending,
        1,
        relet,
    )
    assert {r.id: r.next_attempt_at for r in _replies(testbot)} == {
        mine.id: relet,
        claimed[f"{REPLY_KIND}|console|ab1|0"].id: now + LEASE,
    }
    with testbot.store() as store:
        assert reclaim_replies(store, [inbox_ids[0]], [now + LEASE], relet) == []  # leased anew since
    testbot.clock.set(relet + timedelta(seconds=1))
    adapter = Recorder()
    assert (
        mine.id in (await Deliverer(testbot.engine, {"console": adapter}, testbot.clock).deliver_due()).sent
    )
    with testbot.store() as store:
        assert reclaim_replies(store, [inbox_ids[0]], [relet], relet + LEASE) == []  # sent


def test_replies_to_a_platform_the_deliverer_does_not_send_to_are_left_for_a_claim(testbot: TestBot) -> None:
    handled = _handled(
        testbot, "update: for whoever sends to consoles", Claiming(frozenset({"slack"}), LEASE)
    )
    assert handled.claimed == [] and handled.waiting == 1
    (row,) = _replies(testbot)
    assert (row.status, row.attempts, row.next_attempt_at) == (OutboxStatus.pending, 0, testbot.clock.now())


def _enqueue_burst_then_reply(bot: TestBot, reminders: int) -> None:
    """Reminders that fell due a minute ago to one channel, then a reply due now to another."""
    now = bot.clock.now()
    with bot.store() as store:
        for n in range(reminders):
            store.enqueue(
                due_message(f"reminder-{n}", "console:r1", now - timedelta(minutes=1), f"reminder {n}")
            )
        store.enqueue(due_message("reply", "console:r2", now, "reply", kind=REPLY_KIND))


def test_a_claim_takes_replies_before_what_fell_due_earlier_and_may_take_replies_alone(
    testbot: TestBot,
) -> None:
    _enqueue_burst_then_reply(testbot, 5)
    now = testbot.clock.now()
    with testbot.store() as store:
        assert [row.key for row in store.claim_due(now, ["console"], LEASE, limit=3)] == [
            "reply",
            "reminder-0",
            "reminder-1",
        ]
    with testbot.store() as store:
        store.enqueue(due_message("reply-2", "console:r3", now, "reply", kind=REPLY_KIND))
    with testbot.store() as store:
        assert [row.key for row in store.claim_due(now, ["console"], LEASE, 10, replies_only=True)] == [
            "reply-2"
        ]
        assert store.claim_due(now, ["console"], LEASE, 10, replies_only=True) == []
        assert store.any_claimable(now, ["console"]) and not store.any_claimable(now, ["console"], True)


def test_on_sqlite_the_claim_finds_replies_through_their_own_index_without_statistics(
    testbot: TestBot,
) -> None:
    """SQLite keeps no statistics here: told nothing, it could read every row due in a burst through the
    status index to find the few replies, holding the write lock all the while."""
    if testbot.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans with the statistics it keeps")
    _enqueue_burst_then_reply(testbot, 50)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(testbot.engine, "before_cursor_execute", seen)
    try:
        with testbot.store() as store:
            store.claim_due(testbot.clock.now(), ["console"], LEASE, limit=10)
    finally:
        event.remove(testbot.engine, "before_cursor_execute", seen)
    [(statement, parameters)] = [(s, p) for s, p in statements if "kind = 'reply'" in s]
    with testbot.engine.connect() as db:
        plan = db.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    assert any("USING INDEX ix_outbox_replies_waiting" in str(row) for row in plan), plan


async def _fill_lanes_then(
    deliverer: Deliverer, adapter: Recorder, count: int, meanwhile: Callable[[], None]
) -> None:
    """Run the loop until its lanes are full, do `meanwhile`, wake it, and run on until `adapter` has
    sent `count` messages (five seconds at most)."""
    deliverer.start()
    try:
        async with asyncio.timeout(5):
            while deliverer.in_flight < delivery.MAX_IN_FLIGHT:
                await asyncio.sleep(0.001)
            meanwhile()
            deliverer.wake()
            while len(adapter.sent) < count:
                await asyncio.sleep(0.01)
    finally:
        await deliverer.stop(5)


async def test_with_the_lanes_full_a_reply_written_for_a_claim_is_still_claimed_and_goes_first(
    testbot: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `serve --delivery-process` writes every reply, and as a failed reply waits for its retry: the
    loop's lanes full of a burst, the reply is claimed past them, not after the rest of the burst."""
    monkeypatch.setattr(delivery, "MAX_IN_FLIGHT", 6)
    monkeypatch.setattr(delivery, "POLL_SECONDS", 60.0)
    now = testbot.clock.now()
    with testbot.store() as store:
        for n in range(12):
            store.enqueue(
                due_message(f"reminder-{n}", "console:r1", now - timedelta(minutes=1), f"reminder {n}")
            )
    adapter = SlowRecorder(seconds=0.05)

    def reply() -> None:
        with testbot.store() as store:
            store.enqueue(due_message("reply", "console:r2", now, "reply", kind=REPLY_KIND))

    await _fill_lanes_then(Deliverer(testbot.engine, {"console": adapter}, testbot.clock), adapter, 13, reply)
    texts = [reply.text for _, reply in adapter.sent]
    assert texts.index("reply") < 4, texts  # within the first lane-full's sends, not after all twelve


async def test_lanes_that_empty_while_replies_are_claimed_past_them_do_not_leave_the_rest_to_the_poll(
    testbot: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken with its lanes full, the loop claims replies only; if the lanes have room by the time that
    claim is done, it goes on claiming the rest rather than sleeping until the poll (which here comes
    after the test gives up): half empty, the lanes wake only a loop that left them full."""
    monkeypatch.setattr(delivery, "MAX_IN_FLIGHT", 6)
    monkeypatch.setattr(delivery, "POLL_SECONDS", 60.0)
    now = testbot.clock.now()
    with testbot.store() as store:
        for n in range(8):
            store.enqueue(due_message(f"reminder-{n}", "console:r1", now, f"reminder {n}"))
    claim_and_peek = Deliverer._claim_and_peek

    def slow_for_replies(self: Deliverer, *args: Any) -> Any:
        if args[-1]:  # replies only: long enough for two sends, so the lanes have room, not half
            time.sleep(0.5)
        return claim_and_peek(self, *args)

    monkeypatch.setattr(Deliverer, "_claim_and_peek", slow_for_replies)
    adapter = SlowRecorder(seconds=0.2)
    deliverer = Deliverer(testbot.engine, {"console": adapter}, testbot.clock)
    await _fill_lanes_then(deliverer, adapter, 8, lambda: None)


def _slash_command_handled(bot: TestBot, text: str) -> None:
    """`text` as a Slack slash command in Alpha's channel (whose speakers count as Alpha's members),
    stored and handled as the server does: its answers wait in the outbox for the deliverer."""
    now = bot.clock.now()
    command = said("slack:T0001:UA1", text, now, conversation="slack:T0001:C0001")
    command = command.model_copy(update={"private": True, "reply_expires_at": now + timedelta(minutes=30)})
    with bot.store() as store:
        inbox_id = accept(store, command, now).inbox_id
    assert inbox_id is not None
    handle_or_fail(bot.engine, inbox_id, now)


def test_after_a_long_outage_what_was_recorded_is_still_confirmed_and_other_answers_are_not(
    world: TestBot,
) -> None:
    """Slack takes a slash command's answers for 30 minutes. The server was down for 45 (the commands
    stored and acknowledged before it went): the status asked then is no longer worth giving, but a
    member whose update and blocker are in learns so, rather than send them again and have each
    recorded twice."""
    now = world.clock.now()
    for text in (
        "/cda update the intake form is live",
        "/cda blocker waiting on the 311 export",
        "/cda status",
    ):
        _slash_command_handled(world, text)
    slack = Inbox(world.clock, "slack")
    tick(world, now + timedelta(minutes=45), slack)
    told = [reply.text for _at, _who, reply in slack.received]
    assert any(t.startswith("Update #") for t in told) and any(t.startswith("Blocker #") for t in told)
    assert len(told) == 2, told
    with world.store() as store:
        rows = store.session.exec(select(OutboxMessage).where(OutboxMessage.kind == REPLY_KIND)).all()
    [late] = [r for r in rows if r.recipient.startswith("slack") and r.status == OutboxStatus.dropped]
    assert late.payload["text"].startswith("Status — Alpha") and late.sent_at is None


def test_over_a_platform_outage_of_minutes_what_was_recorded_is_still_confirmed(world: TestBot) -> None:
    """Slack refuses every send for five minutes. A status answer is given up after its six tries
    (about 100 s: someone who asked is told quickly or not at all), but the reply saying the update is
    in keeps being tried, and arrives once Slack is back: its author does not send it again."""
    now = world.clock.now()
    for text in ("/cda update the intake form is live", "/cda status"):
        _slash_command_handled(world, text)
    slack = Inbox(world.clock, "slack")
    slack.failing = DeliveryError("slack answered 500")
    for second in range(0, 15 * 60, 10):
        slack.failing = slack.failing if second < 5 * 60 else None
        tick(world, now + timedelta(seconds=second), slack)
    assert [reply.text.split(" for ")[0] for _at, _who, reply in slack.received] == ["Update #4 recorded"]
    with world.store() as store:
        rows = store.session.exec(select(OutboxMessage).where(OutboxMessage.recipient == "slack:T0001:UA1"))
        failed = [r.payload["text"].split("\n")[0] for r in rows if r.status == OutboxStatus.failed]
    assert failed == ["Status — Alpha"]
