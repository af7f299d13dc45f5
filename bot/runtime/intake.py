"""From acknowledged to handled: the inbox, worked off the event loop by a few workers.

`submit` stores a message (the one write before the platform is acknowledged) and queues it for the
workers; a sweep picks up what was accepted but never handled — by a replica that died, or while the
database was away — so an acknowledged message is always answered."""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine

from bot.core import inbox
from bot.core.clock import Clock
from bot.core.messages import InboundMessage
from bot.runtime.turns import Turns
from store.db import is_transient, reader
from store.models import OutboxMessage
from store.repo import Store, open_store

log = logging.getLogger("cda_bot.intake")

WORKERS = 2
MAX_BACKLOG = 500  # messages accepted and not yet handled in this process; past it, 503
# Messages stored, or handled, in one transaction: what arrives while one commits goes in the next
# (a group commit), so a burst costs a few transactions, not one or three per message. Handling takes
# longer per message: on SQLite its batches are smaller, so the write lock is never held long and a new
# message is stored (and acknowledged) within milliseconds even while others are being handled.
# PostgreSQL has no such lock, and its bigger batches spread each transaction's own statements over
# more messages (at saturation, 9-14 % more events a second than batches of 20).
MAX_BATCH = 100
MAX_HANDLE_BATCH = {"sqlite": 20, "postgresql": 50}
SWEEP_SECONDS = 5.0
STARTUP_HORIZON = timedelta(days=366)
RETRY_AFTER_SECONDS = 5  # what a refused platform is told to wait
# When to read the inbox again after a COMMIT that failed unconfirmed: about a minute in all.
LEARN_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# A message the database failed on is tried again every second for a while (an outage is usually
# seconds, and the sender is waiting), then less often.
BACKOFF = (*(timedelta(seconds=1),) * 10, *(timedelta(seconds=5),) * 20, timedelta(seconds=30))


def backoff(attempts: int) -> timedelta:
    return BACKOFF[min(attempts, len(BACKOFF)) - 1]


Arrival = tuple[InboundMessage, asyncio.Future[inbox.Accepted]]  # a message and who waits for it
# What a batch's senders hear: one error for all, or each their own (stored, or the error).
Outcome = list[inbox.Accepted | Exception] | Exception


class Busy(Exception):
    """Too much accepted and not yet handled: the platform should retry later."""


class Withdrawn(Exception):
    """Not written within the sender's patience, and taken back before its batch began: nothing of it
    is stored, now or later."""


class Unconfirmed(Exception):
    """The batch's COMMIT failed, and the inbox could not be read to learn whether it took: the message
    may be stored (and is then handled, after the handoff), so its sender must not hear it was not."""

    def __init__(
        self,
        unread: Exception,
        error: Exception | None = None,
        pending: dict[tuple[str, str], inbox.Accepted] | None = None,
    ) -> None:
        super().__init__(f"commit not confirmed: {type(unread).__name__}")
        self.unread = unread  # why the inbox could not be read
        self.error = error or unread  # why the COMMIT failed
        # The batch's messages that are in the inbox if it took, as the batch accepted them: whether it
        # did is read again (`_learn`); the others leave no trace to read.
        self.pending = pending or {}


class StillWriting(Exception):
    """Not stored by the sender's deadline, nor withdrawn: it may yet be. `outcome` is settled in the
    sender's stead, with what it would have heard (the message stored, or the database's error)."""

    def __init__(self, outcome: asyncio.Future[inbox.Accepted]) -> None:
        super().__init__("still being written")
        self.outcome = outcome


class Outlet(Protocol):
    """The deliverer of this process: woken when rows wait in the outbox for a claim, and given the
    replies handling wrote as its own claim."""

    def wake(self) -> None: ...

    def claiming(self) -> inbox.Claiming | None: ...

    def take(self, rows: Sequence[OutboxMessage]) -> None: ...


# After handling that fell back to one message at a time: its replies wait for a claim.
UNCLAIMED = inbox.Handled(claimed=[], waiting=1)


class Handoff(Protocol):
    """Another process of this server that handles what this one stores (`serve --delivery-process`)."""

    def hand(self, inbox_ids: list[int]) -> None:
        """Messages this process stored, for the other to handle."""

    @property
    def backlog(self) -> int:
        """Messages handed over and not yet handled, as far as this process knows."""


class Intake:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        outlet: Outlet,
        turns: Turns | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        """`handoff`: what this intake stores is handled there; this one only stores (and neither
        handles nor sweeps: the other process's own intake does)."""
        self.engine = engine
        self.clock = clock
        self.outlet = outlet
        self.turns = turns or Turns(enabled=False)
        self.handoff = handoff
        self.taken = 0  # ids given to `take`
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._known: set[int] = set()  # queued, being handled or waiting to retry here: added once
        self._failures: dict[int, int] = {}  # database failures per message, for its backoff
        # Per message, the leases its replies were written under by handlings that failed at the
        # database: one may have committed all the same, its replies then waiting for this process.
        self._unconfirmed: dict[int, set[datetime]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._arriving: list[Arrival] = []
        self._arriving_lock = threading.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._learning: set[asyncio.Task[None]] = set()  # whether unconfirmed commits took (`_learn`)
        self._handle_batch = MAX_HANDLE_BATCH[engine.dialect.name]

    @property
    def backlog(self) -> int:
        return self.handoff.backlog if self.handoff is not None else len(self._known)

    @property
    def full(self) -> bool:
        return self.backlog + len(self._arriving) >= MAX_BACKLOG

    async def submit(
        self, message: InboundMessage, patience: float | None = None, deadline: float | None = None
    ) -> bool:
        """Store `message` for handling: True once it is durable (the platform may be acknowledged),
        False for a duplicate or chatter. Raises Busy past the backlog bound, or the database's error.
        Past `patience` seconds a message whose batch has not begun is withdrawn (raises Withdrawn); one
        whose batch is being written waits for its outcome, which alone says whether it was stored, up
        to `deadline` seconds: then it raises StillWriting, whose `outcome` says so later."""
        if self.full:
            raise Busy(f"{self.backlog} messages waiting")
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[inbox.Accepted] = loop.create_future()
        with self._arriving_lock:
            self._arriving.append((message, stored))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._store_arriving(), name="intake-store")
        # Timers beside the wait, not `asyncio.wait` (whose waiter wakes the sender a loop turn after
        # the outcome) nor a timeout (which would cancel `stored`, and with it the outcome waited for).
        timers = [loop.call_later(patience, self._withdraw, stored, patience)] if patience is not None else []
        if deadline is not None:
            timers.append(loop.call_later(deadline, self._stop_waiting, stored))
        try:
            accepted = await stored
        finally:
            for timer in timers:
                timer.cancel()
        return accepted.new

    def _withdraw(self, stored: asyncio.Future[inbox.Accepted], patience: float) -> None:
        """Take back the arrival `stored` waits for, unless a writer has taken it into a batch (whose
        outcome alone says whether it was stored): its sender hears Withdrawn."""
        if stored.done():
            return
        with self._arriving_lock:  # the lock `_take` holds
            for index, (_, waiting) in enumerate(self._arriving):
                if waiting is stored:
                    del self._arriving[index]
                    break
            else:
                return
        stored.set_exception(Withdrawn(f"not stored within {patience} s"))

    def _stop_waiting(self, stored: asyncio.Future[inbox.Accepted]) -> None:
        """Wake the sender still waiting for `stored` at its deadline: the writer settles the outcome
        its StillWriting carries instead (`_settle`)."""
        if not stored.done():
            stored.set_exception(StillWriting(asyncio.get_running_loop().create_future()))

    @staticmethod
    def _settle(stored: asyncio.Future[inbox.Accepted], outcome: inbox.Accepted | Exception) -> None:
        """Tell the sender waiting for `stored`, or, past its deadline, the outcome it was handed."""
        if stored.done():
            late = None if stored.cancelled() else stored.exception()
            if not isinstance(late, StillWriting) or late.outcome.done():
                return
            stored = late.outcome
        if isinstance(outcome, Exception):
            stored.set_exception(outcome)
        else:
            stored.set_result(outcome)

    async def _store_arriving(self) -> None:
        """Store what arrived, a batch a transaction, until nothing waits; each sender hears once its
        batch has committed (or the database's error, and its platform gets a 503)."""
        while self._arriving:
            batch, outcome = await asyncio.to_thread(self._accept_arrived)
            if isinstance(outcome, Exception):
                away = outcome.unread if isinstance(outcome, Unconfirmed) else outcome
                refused: list[Arrival] = []
                if is_transient(away):
                    # The database is away: what arrived meanwhile would only wait to fail the same way,
                    # past the platform's patience. Each is refused now (503); the platform retries.
                    # Nothing of it was written, so it hears the plain error even where the batch
                    # may be stored.
                    refused = self._take(len(self._arriving))
                if isinstance(outcome, Unconfirmed) and outcome.pending:
                    # Whether it took is read again; those that leave no trace hear Unconfirmed now.
                    learning = [arrival for arrival in batch if _key(arrival[0]) in outcome.pending]
                    batch = [arrival for arrival in batch if _key(arrival[0]) not in outcome.pending]
                    task = asyncio.get_running_loop().create_task(self._learn(learning, outcome))
                    self._learning.add(task)
                    task.add_done_callback(self._learning.discard)
                for arrivals, error in ((batch, outcome), (refused, away)):
                    for _, stored in arrivals:
                        self._settle(stored, error)
                continue
            answered = False
            # A retry of one stored but never handled is picked up too.
            stored_ids = [
                accepted.inbox_id
                for accepted in outcome
                if isinstance(accepted, inbox.Accepted) and accepted.inbox_id is not None
            ]
            self._hand_on(stored_ids)
            for (_, stored), accepted in zip(batch, outcome, strict=True):
                if isinstance(accepted, inbox.Accepted):
                    answered = answered or bool(accepted.answered)
                self._settle(stored, accepted)
            if answered:
                self.outlet.wake()  # what they were told waits in the outbox

    def _hand_on(self, inbox_ids: list[int]) -> None:
        """Stored messages to handle: here, or in the other process that handles for this one."""
        if self.handoff is not None:
            self.handoff.hand(inbox_ids)
        else:
            self.take(inbox_ids)

    async def _learn(self, waiting: list[Arrival], unconfirmed: Unconfirmed) -> None:
        """Whether a COMMIT that failed unconfirmed took, from the inbox read again until the database
        answers, for about a minute. Meanwhile its senders wait as for a write under way, and past their
        deadline hear it through StillWriting's outcome: a WhatsApp sender or a slash command, never
        sent again, is then told if it was not stored. Found, the message is handled at once; not
        found, its sender hears the COMMIT's error; never learned, Unconfirmed (nothing is said)."""
        keys = [_key(message) for message, _ in waiting]
        found: dict[tuple[str, str], int] | None = None
        try:
            for pause in LEARN_PAUSES:
                await asyncio.sleep(pause)
                try:
                    found = await asyncio.to_thread(self._found, keys)
                    break
                except Exception:
                    continue
        finally:
            if found is None:  # never read, or the intake stopping
                for _, stored in waiting:
                    self._settle(stored, unconfirmed)
        if found is None:
            return
        lost = len(keys) - len(found)
        log.warning("unconfirmed commit read again", extra={"stored": len(found), "lost": lost})
        took = [unconfirmed.pending[key] for key in keys if key in found]
        self._hand_on([accepted.inbox_id for accepted in took if accepted.inbox_id is not None])
        for message, stored in waiting:
            key = _key(message)
            self._settle(stored, unconfirmed.pending[key] if key in found else unconfirmed.error)
        if any(accepted.answered for accepted in took):
            self.outlet.wake()

    def _found(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        with open_store(reader(self.engine)) as store:
            return store.inbox_ids(keys)

    def _accept_arrived(self) -> tuple[list[Arrival], Outcome]:
        """Store what has arrived by the time this process's turn comes, not by the time it was asked
        for: a message that arrives while an earlier batch waits its turn goes with it, instead of
        waiting for that batch's turn and then one more of its own."""
        # Urgent: each sender's platform waits for this commit before it is acknowledged.
        batch: list[Arrival] = []
        accepted: list[inbox.Accepted] | None = None
        try:
            with self.turns.turn(urgent=True), open_store(self.engine) as store:
                batch = self._take(MAX_BATCH)
                accepted = inbox.accept_all(store, [message for message, _ in batch], self.clock.now())
        except Exception as error:
            if accepted is not None:
                # Failed at COMMIT (a connection lost during it, say): the database may have committed.
                return batch, self._confirm(batch, accepted, error)
            # Failed before it took its batch: the next batch hears of it, so a fault that recurs
            # there cannot keep this loop going round with nothing taken.
            return batch or self._take(MAX_BATCH), error
        return batch, list(accepted)

    def _confirm(self, batch: list[Arrival], accepted: list[inbox.Accepted], error: Exception) -> Outcome:
        """Each sender's outcome when the batch's COMMIT failed with `error`, from one read of the inbox
        in a transaction of its own: "nothing was saved" would have a person send again what may be
        stored, and one stored would wait out the handoff unanswered. A message found is taken for
        handling as if the COMMIT had succeeded; one not found hears `error`. If the read fails too,
        Unconfirmed for all of them."""
        # Only what has an inbox id can be in the inbox; the rest were decided without it (chatter, a
        # number on no roster, a message handled before), whether or not the COMMIT took. A join hint
        # to such a number is lost if it did not take: its next message that day is sent one.
        traced = {
            _key(message): result
            for (message, _), result in zip(batch, accepted, strict=True)
            if result.inbox_id is not None
        }
        try:
            found = self._found(list(traced))
        except Exception as unread:
            log.warning(
                "messages whose commit failed may be stored",
                extra={"error": type(error).__name__, "read_error": type(unread).__name__},
            )
            return Unconfirmed(unread, error, traced)
        log.warning(
            "commit failed, the inbox read for what it stored",
            extra={"error": type(error).__name__, "stored": len(found), "lost": len(traced) - len(found)},
        )
        # Found, a message's id is the one the batch read back before its COMMIT.
        return [
            result if result.inbox_id is None or _key(message) in found else error
            for (message, _), result in zip(batch, accepted, strict=True)
        ]

    def _take(self, count: int) -> list[Arrival]:
        with self._arriving_lock:  # the event loop adds to it while a writer thread takes from it
            batch, self._arriving = self._arriving[:count], self._arriving[count:]
        return batch

    def take(self, inbox_ids: Iterable[int]) -> None:
        """Stored messages to be handled here: this intake's own, or another process's of this server
        (counted in `taken`, which that process is told)."""
        for inbox_id in inbox_ids:
            self.taken += 1
            self._add(inbox_id)

    def _add(self, inbox_id: int) -> None:
        if inbox_id not in self._known:
            self._known.add(inbox_id)
            self._queue.put_nowait(inbox_id)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.handoff is not None:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"intake-{n}") for n in range(WORKERS)]
        self._tasks.append(loop.create_task(self._sweep(), name="intake-sweep"))

    async def stop(self, timeout: float) -> None:
        """Handle what was accepted here, up to `timeout` seconds; what is left stays pending in the
        database for the next process."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        for task in [*self._tasks, *self._learning]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._learning, return_exceptions=True)
        self._tasks = []

    # -- workers ------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._handle_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            retry_in: timedelta | None = None
            handled = UNCLAIMED
            # Asked here, on the loop, where the deliverer's lanes change.
            claiming = self.outlet.claiming()
            try:
                retry_in, handled = await asyncio.to_thread(self._handle, batch, claiming)
            except Exception as error:
                log.exception("handling messages failed", extra={"inbox_ids": str(batch)})
                # Left pending, the sweep would hand the batch back together within seconds, to fail the
                # same way again and again: postponed, as when the database fails.
                retry_in = await asyncio.to_thread(self._postpone, batch, error, self.clock.now())
            finally:
                for _ in batch:
                    self._queue.task_done()
            if handled.claimed:
                self.outlet.take(handled.claimed)
            for inbox_id in batch:
                if retry_in is None:
                    self._known.discard(inbox_id)
                    self._failures.pop(inbox_id, None)
                    self._unconfirmed.pop(inbox_id, None)
                else:
                    # Still ours: tried again here in a moment, whether or not the postponement could
                    # be written (the sweep is the fallback for when this process dies meanwhile).
                    asyncio.get_running_loop().call_later(retry_in.total_seconds(), self._requeue, inbox_id)
            if retry_in is None and handled.waiting:
                self.outlet.wake()

    def _requeue(self, inbox_id: int) -> None:
        if self._tasks:
            self._queue.put_nowait(inbox_id)
        else:
            self._known.discard(inbox_id)

    def _handle(
        self, batch: list[int], claiming: inbox.Claiming | None
    ) -> tuple[timedelta | None, inbox.Handled]:
        with self.turns.turn():
            return self._handle_in_turn(batch, claiming)

    def _handle_in_turn(
        self, batch: list[int], claiming: inbox.Claiming | None
    ) -> tuple[timedelta | None, inbox.Handled]:
        """Handle messages in one transaction; if one of them raises, again one by one, each in a
        savepoint, so only that one is undone and marked failed (its sender told). How long to wait
        before trying them all again when the database failed (then nothing of the batch was
        written), and what was written for the deliverers."""
        now = self.clock.now()
        try:
            try:
                with open_store(self.engine) as store:
                    reclaimed = self._reclaim(store, batch, now, claiming)
                    handled = inbox.handle_all(store, batch, now, claiming)
                # Committed: what it claimed may go out.
                return None, inbox.Handled(reclaimed + handled.claimed, handled.waiting)
            except Exception as error:
                if is_transient(error):
                    raise
                # Some message of the batch fails: nothing of it was kept; one by one, to find which.
            with open_store(self.engine) as store:
                reclaimed = self._reclaim(store, batch, now, claiming)
                broken: list[tuple[int, Exception]] = []
                for inbox_id in batch:
                    try:
                        with store.session.begin_nested():
                            inbox.handle(store, inbox_id, now)
                    except Exception as error:
                        if is_transient(error):
                            raise
                        broken.append((inbox_id, error))
                for inbox_id, error in broken:
                    log.error("handling failed", exc_info=error, extra={"inbox_id": inbox_id})
                    self._fail(store, inbox_id, f"{type(error).__name__}: {error}", now)
            return None, inbox.Handled(reclaimed, UNCLAIMED.waiting)
        except Exception as error:
            if not is_transient(error):
                raise
            # The database went away mid-batch: nothing of it was written.
            log.warning("database unavailable, messages postponed", extra={"inbox_ids": str(batch)})
            if claiming is not None:
                for inbox_id in batch:
                    self._unconfirmed.setdefault(inbox_id, set()).add(now + claiming.lease)
            return self._postpone(batch, error, now), UNCLAIMED

    def _fail(self, store: Store, inbox_id: int, reason: str, now: datetime) -> None:
        """Give up on a message that raised, in a savepoint: the fault can be one its failure notice
        shares (reading who spoke, say), and then only the notice is lost, not its batch-mates' work."""
        try:
            with store.session.begin_nested():
                inbox.fail(store, inbox_id, reason, now)
        except Exception as error:
            if is_transient(error):
                raise
            log.error("failure notice failed", exc_info=error, extra={"inbox_id": inbox_id})
            store.fail_inbox(inbox_id, reason, now)  # failed all the same, its sender untold

    def _postpone(self, batch: list[int], error: Exception, now: datetime) -> timedelta:
        """Count a failed try at each message of `batch`, and write when the next is due (should this
        process die meanwhile, the sweep finds them then): how long to wait, growing with the tries."""
        attempts = 0
        for inbox_id in batch:
            self._failures[inbox_id] = self._failures.get(inbox_id, 0) + 1
            attempts = max(attempts, self._failures[inbox_id])
        with contextlib.suppress(Exception), open_store(self.engine) as store:
            for inbox_id in batch:
                store.postpone_inbox(inbox_id, type(error).__name__, lambda tries: now + backoff(tries))
        return backoff(attempts)

    def _reclaim(
        self, store: Store, batch: list[int], now: datetime, claiming: inbox.Claiming | None
    ) -> list[OutboxMessage]:
        """Replies an earlier handling of these messages wrote as this process's claim, if that
        handling committed after all: its transaction's outcome was not known, and the messages were
        handled again — found done."""
        unconfirmed = [inbox_id for inbox_id in batch if inbox_id in self._unconfirmed]
        if claiming is None or not unconfirmed:
            return []  # without room in the lanes now, they go out once their lease runs out
        leases = sorted({lease for inbox_id in unconfirmed for lease in self._unconfirmed[inbox_id]})
        return inbox.reclaim_replies(store, unconfirmed, leases, now + claiming.lease)

    async def _sweep(self) -> None:
        # At start, everything pending: whoever accepted it before is gone, or handles it under a lock
        # this process skips. Then only what waited out its handoff or backoff.
        horizon = STARTUP_HORIZON
        while True:
            held = set(self._known)
            try:
                due = await asyncio.to_thread(self._due, self.clock.now() + horizon)
            except Exception as error:
                log.warning("inbox sweep failed", extra={"error": type(error).__name__})
            else:
                for inbox_id in due:
                    # Held here when the sweep read it, and no longer: handled since, not pending.
                    if inbox_id in held and inbox_id not in self._known:
                        continue
                    if self.backlog < MAX_BACKLOG:
                        self._add(inbox_id)
                horizon = timedelta()
            await asyncio.sleep(SWEEP_SECONDS)

    def _due(self, now: datetime) -> list[int]:
        with open_store(reader(self.engine)) as store:
            return store.due_inbox(now, MAX_BACKLOG)


def _key(message: InboundMessage) -> tuple[str, str]:
    """How the inbox knows a message."""
    return message.platform, message.message_id
