"""The one path out: due outbox rows (replies, reminders, nudges, digests, notices) go out through the
recipient's adapter, each exactly once across passes, restarts and replicas (see README, "Promises").

`deliver_due` is one round (a `cda-bot tick`, a test); `run` is the server's loop: woken the moment a
reply is written, it claims what is due and hands each row to the lane of its rate-limit key, so one
slow channel never holds up another and a new reply never waits for an old batch."""

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bot.calendar.sessions import between
from bot.core.audience import may_be_told, may_still_answer
from bot.core.clock import Clock
from bot.core.dispatcher import speaker_of
from bot.core.identity import platform_of
from bot.core.inbox import REPLY_KIND, Claiming
from bot.core.messages import RECORDED, Adapter, DeliveryError, Reply
from bot.runtime import metrics
from bot.runtime.intake import Handoff
from bot.runtime.ratelimit import RateLimiter, limit_key
from bot.runtime.turns import Turns
from store import views
from store.db import is_transient, reader
from store.models import LEFT_PROGRAM, REMINDER_KIND, CoachingSession, OutboxMessage, OutboxStatus, reminded
from store.repo import Claim, Finished, Store, open_store

log = logging.getLogger("cda_bot.delivery")

BACKOFF_SECONDS = (30, 120, 600, 1800, 3600)
# Someone is waiting for a reply: retry within seconds, not minutes.
REPLY_BACKOFF_SECONDS = (1, 3, 10, 30, 60)
# A reply saying what was recorded is worth giving late (until it expires, a day): over a platform's
# outage of minutes the person still learns their update is in, rather than send it again.
RECORDED_BACKOFF_SECONDS = (1, 10, 60, 600, 3600)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
# How long a claimed row stays with its deliverer. The server renews the lease of what it holds every
# third of it, so a row changes hands only when its deliverer died or lost the database for longer.
LEASE = timedelta(seconds=30)
POLL_SECONDS = 5.0  # the loop looks for retries and rows of other replicas at least this often
MAX_IN_FLIGHT = 1000  # rows held in lanes at once; past this the loop claims nothing new
# A lane whose limit many conversations share (WhatsApp's sender) keeps up to this many sends in flight,
# never two to one number: one at a time, each waiting for the platform's answer (100 ms or more over
# the internet), a sender goes at 9 messages a second, not Twilio's 80. More would queue for the
# sender's spacing, and a reply taken next would wait behind them (32: 76 a second, replies 0.3 s).
SHARED_LANE_SENDS = 8
LOOK_AHEAD = 64  # rows a lane looks through for one whose conversation has nothing in flight
# A one-off round (`deliver_due`: `cda-bot tick`, `say`) keeps trying to record a send this long: the
# row stays its own until the lease runs out, and a round that gave up sooner would leave a sent row to
# be sent again by the server once it did.
RECORD_PATIENCE = LEASE.total_seconds()
CLAIM_RETRY = timedelta(seconds=1)  # after a claim the database failed
FAILING = "failing"  # a `state` in which the handling and sending process cannot be relied on


STOPPED = "the recipient said stop"
# Planned when the recipient could see its city; since then a channel was bound elsewhere (or unbound),
# a member moved or a coach taken off the city.
UNSEEN = "the recipient may no longer see the city it is about"
# Planned for a session that has since been removed, skipped or moved (a calendar import, the city's
# zone changed): its time is no longer that session's. The session at its new time has its own.
CANCELLED = "its session was cancelled or moved"
# A reply sent within this of being written goes where it was asked, to the people who asked; one held
# back longer (the platform down, retries) is asked the audience rule again, as an unprompted message is,
# since an admin may have bound its channel to another city or taken its coach off the city meanwhile.
REPLY_FRESH = timedelta(seconds=30)
# How far a sent message got, as platforms report it; a failure is final.
DELIVERY_ORDER = {"sent": 1, "delivered": 2, "read": 3}
FINAL = frozenset({"failed", "undelivered"})


def _about(row: OutboxMessage) -> set[int]:
    """The cities whose data an unprompted message shows: its row's, and those its reply names (a
    digest's)."""
    cities = set(row.payload.get("about") or ())
    if row.city_id is not None:
        cities.add(row.city_id)
    return cities


def _still_on(store: Store, session_id: int, start: datetime) -> bool:
    """Whether the session still has an occurrence in the minute a reminder of it was planned for."""
    session = store.session.get(CoachingSession, session_id)
    city = store.city(session.city_id) if session is not None else None
    if session is None or city is None:
        return False
    return bool(between([session], city.zone, start, start + timedelta(minutes=1)))


@dataclass(frozen=True)
class Receipts:
    """The ids a platform gave the messages a row went out as."""

    platform: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """What one send did, to be recorded on its row."""

    outbox_id: int
    attempts: int  # as the claim the send was made under set them
    status: OutboxStatus
    now: datetime
    error: str | None
    retry_at: datetime | None
    receipts: Receipts | None = None


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


class Lane:
    """What waits to go under one rate-limit key: replies first, as someone is waiting for them, then
    the rest in the order they came. A row goes only while nothing else to its recipient is in flight,
    so one conversation's messages keep their order."""

    def __init__(self, width: int) -> None:
        self.width = width  # sends in flight at once
        self.replies: deque[OutboxMessage] = deque()
        self.others: deque[OutboxMessage] = deque()
        self.sending: set[str] = set()  # recipients with a send in flight
        self.changed = asyncio.Event()  # a row came, or a send finished

    def __len__(self) -> int:
        return len(self.replies) + len(self.others) + len(self.sending)

    def add(self, row: OutboxMessage) -> None:
        (self.replies if row.kind == REPLY_KIND else self.others).append(row)
        self.changed.set()

    def take(self) -> OutboxMessage | None:
        """The next row that may go now, marked as in flight; None if none may."""
        if len(self.sending) >= self.width:
            return None
        for queue in (self.replies, self.others):
            for i, row in enumerate(itertools.islice(queue, LOOK_AHEAD)):
                if row.recipient not in self.sending:
                    del queue[i]
                    self.sending.add(row.recipient)
                    return row
        return None

    def done(self, row: OutboxMessage) -> None:
        self.sending.discard(row.recipient)
        self.changed.set()


def record_pause(attempt: int) -> float:
    return min(0.5 * attempt, 5.0)


def retry_delay(row: OutboxMessage, retry_after: float | None) -> timedelta:
    if row.kind != REPLY_KIND:
        schedule = BACKOFF_SECONDS
    elif row.payload.get("kind") in RECORDED:
        schedule = RECORDED_BACKOFF_SECONDS
    else:
        schedule = REPLY_BACKOFF_SECONDS
    backoff = schedule[min(row.attempts, len(schedule)) - 1]
    return timedelta(seconds=max(backoff, retry_after or 0))


class Deliverer:
    def __init__(
        self,
        engine: Engine,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        limiter: RateLimiter | None = None,
        turns: Turns | None = None,
    ) -> None:
        self.engine = engine
        self.turns = turns or Turns(enabled=False)
        self.adapters = adapters
        self.clock = clock
        self.limiter = limiter or RateLimiter()
        self._lanes: dict[str, Lane] = {}
        self._lane_tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False
        # Claimed here and not yet recorded, with the lease each holds (renewed while held).
        self._held: dict[int, datetime] = {}
        # Rows the database failed on while claimed here: those a claim returned as its commit failed
        # (perhaps claimed, perhaps not), and those whose send it failed before. Put back by the next
        # claim, where they still hold that claim, instead of lying unsent until their lease runs out.
        self._unsure: list[Claim] = []
        self._finishing: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._finisher: asyncio.Task[None] | None = None
        # The loop stopped claiming with the lanes full: the lanes wake it once they have room again,
        # rather than leaving what is due to wait for the next poll.
        self._full = False

    # -- one round ----------------------------------------------------------------------------------
    async def deliver_due(self, limit: int = 500) -> DeliveryReport:
        """Send what is due to recipients whose platform has an adapter; the rest stays queued."""
        report = DeliveryReport()
        rows = await asyncio.to_thread(self._claim, self.clock.now(), limit)
        queues: dict[str, list[OutboxMessage]] = defaultdict(list)
        for row in rows:
            queues[limit_key(row.recipient)].append(row)
        renewer = None if self.running else asyncio.get_running_loop().create_task(self._renewing())
        try:
            # One queue per rate-limit key, all at once: a slow channel never holds up another.
            await asyncio.gather(*(self._drain(queue, report) for queue in queues.values()))
        finally:
            if renewer is not None:
                renewer.cancel()
        return report

    async def _drain(self, queue: list[OutboxMessage], report: DeliveryReport) -> None:
        for row in queue:
            await self._deliver(row, report)

    # -- the server's loop --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def in_flight(self) -> int:
        # A lane counts once more for itself: a conversation busy with its spacing holds its place
        # between sends, and a burst to many conversations goes as well with fewer at once.
        return sum(len(lane) for lane in self._lanes.values()) + len(self._lane_tasks)

    def wake(self) -> None:
        """Something was written to the outbox: look now, not at the next poll."""
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._run(), name="deliverer")
        self._renewer = loop.create_task(self._renewing(), name="deliverer-leases")

    async def _run(self) -> None:
        """Deliver until stopped; a claim the database failed is logged and tried again within a second."""
        assert self._wake is not None
        while True:
            self._wake.clear()
            full = self.in_flight >= MAX_IN_FLIGHT
            claimed, next_due = await self._claim_into_lanes(replies_only=full)
            if self._stopping:
                return  # after one last claim, so what was written just before stopping goes out too
            if (claimed or full) and self.in_flight < MAX_IN_FLIGHT:
                continue  # there may be more due right away, or the lanes emptied while replies were claimed
            self._full = self.in_flight >= MAX_IN_FLIGHT
            pause = POLL_SECONDS
            if next_due is not None:
                pause = min(pause, max((next_due - self.clock.now()).total_seconds(), 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def stop(self, timeout: float) -> None:
        """Claim once more, then let the lanes finish what they hold, up to `timeout` seconds; the rest
        stays claimed and goes out from another replica, or this one after a restart, once its lease
        runs out."""
        if self._loop_task is not None:
            self._stopping = True
            self.wake()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._loop_task), timeout)
            self._loop_task.cancel()
            self._loop_task = None
        if self._lane_tasks:
            await asyncio.wait(set(self._lane_tasks.values()), timeout=timeout)
        for task in list(self._lane_tasks.values()):
            task.cancel()
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def _claim_into_lanes(self, replies_only: bool = False) -> tuple[int, datetime | None]:
        """Claim what is due into the lanes: how many rows, and when the next one falls due (None: the
        lanes are full, and wake the loop once they have room). With the lanes full, replies still
        come in, up to the bound `claiming` keeps: written for a claim (a retry, lanes full at handling),
        one would otherwise wait behind the whole burst."""
        room = (self._reply_bound() if replies_only else MAX_IN_FLIGHT) - self.in_flight
        if room <= 0:
            return 0, None
        unsure, taken, now = list(self._unsure), list[Claim](), self.clock.now()
        # Held here past their lease (the database was away while they were sent or recorded, and so
        # was their renewal): the claim would take them as a dead deliverer's, for a lane to send again.
        lapsed = [outbox_id for outbox_id, lease in list(self._held.items()) if lease <= now]
        try:
            rows, next_due = await asyncio.to_thread(
                self._claim_and_peek, now, min(room, 200), unsure, taken, replies_only, lapsed
            )
        except Exception as error:
            log.warning("claiming due messages failed", extra={"error": type(error).__name__})
            self._unsure.extend(taken)
            return 0, self.clock.now() + CLAIM_RETRY  # the sender is waiting: look again soon
        del self._unsure[: len(unsure)]  # put back by that claim (lanes only ever append)
        for outbox_id in lapsed:
            if outbox_id in self._held:  # not recorded meanwhile
                self._held[outbox_id] = now + LEASE
        self._into_lanes(rows)
        return len(rows), None if replies_only else next_due

    @property
    def state(self) -> str | None:
        """How a process handling and sending for this one stands, for `/readyz` (FAILING: unready);
        None: it is this one."""
        return None

    def handoff(self) -> Handoff | None:
        """Where what this process stores is handled: here (None), unless it sends from elsewhere."""
        return None

    def claiming(self) -> Claiming | None:
        """How new replies may be written, so that this deliverer sends them without claiming them:
        as claimed by it, while it runs here with room in its lanes. None: written for a claim.

        The loop's claims stop at MAX_IN_FLIGHT and replies may go on to twice that: written for a
        claim, a reply would wait behind every row due before it (a Monday's reminders at scale,
        seconds of them), when the person who wrote is waiting for it."""
        if not self.running or self._stopping or self.in_flight >= self._reply_bound():
            return None
        return Claiming(frozenset(self.adapters), LEASE)

    @staticmethod
    def _reply_bound() -> int:
        """How much the lanes may hold with replies, past what the loop claims of everything else."""
        return 2 * MAX_IN_FLIGHT

    def take(self, rows: Sequence[OutboxMessage]) -> None:
        """Send rows written as this deliverer's claim (`claiming`), now that they are committed."""
        self._held.update({row.id: row.next_attempt_at for row in rows if row.id is not None})
        self._into_lanes(rows)

    def _into_lanes(self, rows: Sequence[OutboxMessage]) -> None:
        for row in rows:
            key = limit_key(row.recipient)  # a lane per limit: WhatsApp's sender is one
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = Lane(SHARED_LANE_SENDS if key != row.recipient else 1)
            lane.add(row)
            if key not in self._lane_tasks:
                task = asyncio.get_running_loop().create_task(self._lane(key), name=f"lane {key}")
                self._lane_tasks[key] = task

    async def _lane(self, key: str) -> None:
        lane = self._lanes[key]
        sends: set[asyncio.Task[None]] = set()
        try:
            while lane:
                row = lane.take()
                if row is None:
                    lane.changed.clear()
                    await lane.changed.wait()
                elif lane.width == 1:
                    await self._send_in_lane(lane, row)  # no task of its own where one goes at a time
                else:
                    send = asyncio.get_running_loop().create_task(self._send_in_lane(lane, row))
                    sends.add(send)
                    send.add_done_callback(sends.discard)
        finally:
            for send in list(sends):
                send.cancel()
            del self._lanes[key]
            del self._lane_tasks[key]

    async def _send_in_lane(self, lane: Lane, row: OutboxMessage) -> None:
        try:
            await self._deliver(row, DeliveryReport())
        except Exception as error:
            # Something failed before the send (an outcome is recorded durably, see `_record`): nothing
            # went out. The database, for a moment: the row is put back by the next claim. Anything
            # else: it is tried again, an attempt counted, once its lease runs out.
            log.warning("delivery postponed", extra={"outbox_id": row.id, "error": type(error).__name__})
            lease = self._held.pop(row.id, None)  # type: ignore[arg-type]
            if lease is not None and is_transient(error):
                self._unsure.append(Claim(row.id, row.attempts, lease))  # type: ignore[arg-type]
        finally:
            lane.done(row)
        if self._full and self.in_flight <= MAX_IN_FLIGHT // 2:
            self._full = False
            self.wake()

    async def _renewing(self) -> None:
        """Every third of a lease, renew the leases of the rows held here."""
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            if not self._held:
                continue
            ids, until = sorted(self._held), self.clock.now() + LEASE
            try:
                await asyncio.to_thread(self._extend, ids, until)
            except Exception as error:
                log.warning("renewing leases failed", extra={"error": type(error).__name__})
                continue
            for outbox_id in ids:
                if outbox_id in self._held:
                    self._held[outbox_id] = until

    # -- one message --------------------------------------------------------------------------------
    async def _deliver(self, row: OutboxMessage, report: DeliveryReport) -> None:
        assert row.id is not None
        now = self.clock.now()
        if row.expires_at is not None and now >= row.expires_at:
            log.info("outbox message expired, not sent", extra={"outbox_id": row.id, "kind": row.kind})
            await self._record(row, OutboxStatus.dropped, now, "expired", None)
            report.dropped.append(row.id)
            return
        # A reply knows where it goes; only an unprompted message needs the stored reference.
        reference = None
        if row.kind != REPLY_KIND:
            reminds = reminded(row.key) if row.kind.startswith(REMINDER_KIND) else None
            reference, refused = await asyncio.to_thread(self._reachable, row.recipient, _about(row), reminds)
            if refused is not None:
                log.info("not sent", extra={"outbox_id": row.id, "kind": row.kind, "reason": refused})
                await self._record(row, OutboxStatus.dropped, now, refused, None)
                report.dropped.append(row.id)
                return
        else:
            cities = _about(row)
            held_back = row.attempts > 1 or now - row.created_at > REPLY_FRESH
            if cities and held_back and not await asyncio.to_thread(self._still_sees, row, cities):
                log.info("not sent", extra={"outbox_id": row.id, "kind": row.kind, "reason": UNSEEN})
                await self._record(row, OutboxStatus.dropped, now, UNSEEN, None)
                report.dropped.append(row.id)
                return
            if not row.context:
                reference = await asyncio.to_thread(self._reference, row.recipient)
        # A retry goes on from the parts of a long reply an earlier attempt sent, in whichever process.
        sent = await asyncio.to_thread(self._parts_sent, row.id) if row.attempts > 1 else []
        # The wait comes last, right before the send, so the spacing holds between actual sends.
        limited = self._limited_as(row, reference)
        await self.limiter.wait(limited)
        await self._send(row, reference, report, sent, limited)

    def _limited_as(self, row: OutboxMessage, reference: dict[str, Any] | None) -> str:
        """What the platform counts this send against: the recipient, unless its adapter says where the
        send lands (a Teams personal chat is reached under the chat's name and the person's)."""
        adapter = self.adapters.get(platform_of(row.recipient))
        landing = getattr(adapter, "limit_key", None)
        return landing(row.recipient, reference, row.context) if landing is not None else row.recipient

    async def _send(
        self,
        row: OutboxMessage,
        reference: dict[str, Any] | None,
        report: DeliveryReport,
        sent: Sequence[str],
        limited: str,
    ) -> None:
        """`limited`: the rate-limit key `_deliver` waited for."""
        assert row.id is not None
        adapter = self.adapters[platform_of(row.recipient)]
        try:
            reply = Reply.model_validate(row.payload).rendered(self.clock.now())
            # Only an adapter that said it sent some parts is told of them.
            progress = {"sent": list(sent)} if sent else {}
            try:
                receipts = await adapter.send(row.recipient, reply, reference, row.context, **progress)
            finally:
                self.limiter.done(limited)
        except Exception as error:
            now = self.clock.now()
            retry_after = error.retry_after if isinstance(error, DeliveryError) else None
            permanent = isinstance(error, DeliveryError) and error.permanent
            # Parts that went out are kept whatever comes next: a retry skips them, a report finds them.
            parts = None
            if isinstance(error, DeliveryError) and error.sent:
                parts = Receipts(platform_of(row.recipient), error.sent)
            # A platform's refusal reads the same whether the send or a later report brought it.
            reason = (str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}")[
                :1000
            ]
            if permanent or row.attempts >= MAX_ATTEMPTS:
                log.warning(
                    "outbox message failed",
                    extra={"outbox_id": row.id, "attempts": row.attempts, "error": reason},
                )
                metrics.send_failed(platform_of(row.recipient), final=True)
                await self._record(row, OutboxStatus.failed, now, reason, None, parts)
                report.failed.append(row.id)
            else:
                retry_at = now + retry_delay(row, retry_after)
                metrics.send_failed(platform_of(row.recipient), final=False)
                await self._record(row, OutboxStatus.pending, now, reason, retry_at, parts)
                report.retrying.append(row.id)
                self.wake()  # so the loop sleeps until this retry is due, not a whole poll
            return
        sent = Receipts(platform_of(row.recipient), tuple(receipts or ()))
        metrics.SENDS.labels(sent.platform).inc()
        await self._record(row, OutboxStatus.sent, self.clock.now(), None, None, sent)
        report.sent.append(row.id)

    async def _record(
        self,
        row: OutboxMessage,
        status: OutboxStatus,
        now: datetime,
        error: str | None,
        retry_at: datetime | None,
        receipts: Receipts | None = None,
    ) -> None:
        """Record what a send did, however long the database is away: a row sent but recorded as still
        claimed would go out again when its lease ran out. Meanwhile the row stays in its lane, whose
        lease the loop keeps renewing (first thing once the database is back, if it ran out meanwhile).
        A one-off round (`deliver_due`) gives up after RECORD_PATIENCE seconds."""
        outbox_id = row.id
        assert outbox_id is not None
        outcome = Outcome(outbox_id, row.attempts, status, now, error, retry_at, receipts)
        started = time.monotonic()
        for attempt in itertools.count(1):
            try:
                await self._finish_together(outcome)
                self._held.pop(outbox_id, None)
                return
            except Exception as failure:
                if not self.running and time.monotonic() - started >= RECORD_PATIENCE:
                    log.error(
                        "delivery not recorded: it may be sent again",
                        extra={"outbox_id": outbox_id, "error": type(failure).__name__},
                    )
                    raise
                log.warning(
                    "recording a delivery failed, trying again",
                    extra={"outbox_id": outbox_id, "error": type(failure).__name__},
                )
                await asyncio.sleep(record_pause(attempt))

    # -- what the platform reports later -------------------------------------------------------------
    async def reported(
        self, platform: str, platform_id: str, delivery: str, code: str | None, error: DeliveryError | None
    ) -> bool:
        """A platform's later word on a message it accepted (WhatsApp: delivered, read, failed with an
        error code): kept on its row, and a failure treated as one the send itself returned would be —
        retried if it may pass, failed for good if not. False if no row went out under that id."""
        found = await asyncio.to_thread(self._report, platform, platform_id, delivery, code, error)
        if found:
            self.wake()
        return found

    def _report(
        self, platform: str, platform_id: str, delivery: str, code: str | None, error: DeliveryError | None
    ) -> bool:
        now = self.clock.now()
        with self.turns.turn(), open_store(self.engine) as store:
            row = store.sent_as(platform, platform_id)
            if row is None:
                return False
            behind = delivery not in FINAL and DELIVERY_ORDER.get(delivery, 0) < DELIVERY_ORDER.get(
                row.delivery or "", 0
            )
            if row.delivery in FINAL or behind:
                return True  # callbacks arrive out of order: "delivered" after "read" changes nothing
            row.delivery, row.delivery_code = delivery, code
            if error is not None and row.status == OutboxStatus.sent:
                row.last_error = str(error)[:1000]
                if error.permanent or row.attempts >= MAX_ATTEMPTS:
                    metrics.send_failed(platform, final=True)
                    row.status = OutboxStatus.failed
                    log.warning(
                        "outbox message failed after it was sent",
                        extra={"outbox_id": row.id, "error": row.last_error},
                    )
                else:
                    metrics.send_failed(platform, final=False)
                    row.status = OutboxStatus.pending
                    row.next_attempt_at = now + retry_delay(row, error.retry_after)
            if error is not None and row.status == OutboxStatus.pending:
                # A part did not arrive: the retry sends the whole reply, not what follows the parts
                # posted so far (their later reports find no row, and change nothing).
                store.forget_parts(row.id)  # type: ignore[arg-type]
            store.session.add(row)
        return True

    # -- the database -------------------------------------------------------------------------------
    def _claim(self, now: datetime, limit: int) -> list[OutboxMessage]:
        return self._claim_and_peek(now, limit)[0]

    def _claim_and_peek(
        self,
        now: datetime,
        limit: int,
        unsure: Sequence[Claim] = (),
        taken: list[Claim] | None = None,
        replies_only: bool = False,
        lapsed: Sequence[int] = (),
    ) -> tuple[list[OutboxMessage], datetime | None]:
        """Put back `unsure` rows still claimed as they were, lease the `lapsed` rows held here again,
        claim what is due (also into `taken`, which the caller keeps if the commit fails), and say when
        the next row falls due."""
        # On SQLite, looked at first without the write lock: most looks (every wake, every poll) find
        # nothing due, and a claim would make the server's writers wait for nothing. PostgreSQL's claim
        # locks only the rows it takes, so there the look would be one more round trip for nothing.
        if self.engine.dialect.name == "sqlite" and not unsure and not lapsed:
            with open_store(reader(self.engine)) as store:
                if not store.any_claimable(now, list(self.adapters), replies_only):
                    return [], store.next_due(list(self.adapters))
        with self.turns.turn(), open_store(self.engine) as store:
            store.release_claims(unsure, now)
            if lapsed:
                store.extend_lease(lapsed, now + LEASE)
            rows = store.claim_due(now, list(self.adapters), LEASE, limit, replies_only)
            if taken is not None:
                taken.extend(Claim(row.id, row.attempts, row.next_attempt_at) for row in rows)  # type: ignore[arg-type]
            next_due = store.next_due(list(self.adapters))
        self._held.update({row.id: row.next_attempt_at for row in rows if row.id is not None})
        return rows, next_due

    def _extend(self, ids: list[int], until: datetime) -> None:
        with open_store(self.engine) as store:
            store.extend_lease(ids, until)

    async def _finish_together(self, outcome: Outcome) -> None:
        """Write `outcome` with whatever other sends finished meanwhile, in one transaction (a group
        commit): a write per send would keep every lane queueing for the database's write lock."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishing.append((outcome, written))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.get_running_loop().create_task(self._write_outcomes(), name="finisher")
        await written

    async def _write_outcomes(self) -> None:
        while self._finishing:
            batch, self._finishing = self._finishing, []
            try:
                await asyncio.to_thread(self._finish, [outcome for outcome, _ in batch])
            except Exception as error:
                for _, written in batch:
                    if not written.done():
                        written.set_exception(error)
                continue
            for _, written in batch:
                if not written.done():
                    written.set_result(None)

    def _finish(self, outcomes: list[Outcome]) -> None:
        with self.turns.turn(), open_store(self.engine) as store:
            taken_over = store.finish_all(
                [Finished(o.outbox_id, o.attempts, o.status, o.now, o.error, o.retry_at) for o in outcomes]
            )
            # Kept all the same: the platform has these messages, a report on one finds its row, and a
            # retry of a long reply goes on after them.
            store.add_receipts(
                [(o.outbox_id, o.receipts.platform, o.receipts.ids, o.now) for o in outcomes if o.receipts]
            )
        for outcome in outcomes:
            if outcome.outbox_id in taken_over:
                log.warning(
                    "outcome not recorded: the lease ran out first and another deliverer claimed the message",
                    extra={"outbox_id": outcome.outbox_id, "status": outcome.status.value},
                )

    def _parts_sent(self, outbox_id: int) -> list[str]:
        with open_store(reader(self.engine)) as store:
            return store.parts_sent(outbox_id)

    def _reference(self, recipient: str) -> dict[str, Any] | None:
        with open_store(reader(self.engine)) as store:
            return store.reference(recipient)

    def _still_sees(self, row: OutboxMessage, cities: set[int]) -> bool:
        asker = (row.payload or {}).get("asker")
        who, where = asker if asker else (row.recipient, row.recipient)
        with open_store(reader(self.engine)) as store:
            found = views.whereabouts(store, who, where)
        return may_still_answer(found, cities, speaker_of(found, who) if asker else None)

    def _reachable(
        self, recipient: str, cities: set[int], reminds: tuple[int, datetime] | None = None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """How to reach `recipient` unprompted, or why not to: they said `stop`, they may no longer
        see a city the message shows, or the session a reminder is of (`reminds`: its id and start) no
        longer starts then (a read: no write lock)."""
        with open_store(reader(self.engine)) as store:
            found = views.whereabouts(store, recipient, recipient)
            if found.person is not None and found.person.stopped_at is not None:
                return None, STOPPED
            if not may_be_told(found, cities):
                return None, UNSEEN
            # Planned as the city was archived (a pass under way then): what it wrote after is dropped here.
            place = found.channel_city or found.city
            if place is not None and place.archived_at is not None and place.id in cities:
                return None, LEFT_PROGRAM
            if reminds is not None and not _still_on(store, *reminds):
                return None, CANCELLED
            return store.reference(recipient), None
