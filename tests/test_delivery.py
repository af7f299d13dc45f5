"""Unprompted messages leave through the outbox once, are retried with backoff, and fail visibly."""

import asyncio
import warnings
from datetime import timedelta
from typing import Any

from sqlmodel import select

from bot.core.inbox import REPLY_KIND
from bot.core.messages import DeliveryError, Reply
from bot.runtime.delivery import MAX_ATTEMPTS, Deliverer
from store.models import OutboxMessage
from tests.conftest import TestBot, due_message


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
