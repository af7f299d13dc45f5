"""From acknowledged to handled: the inbox, worked off the event loop by a few workers.

`submit` stores a message (the one write before the platform is acknowledged) and queues it for the
workers; a sweep picks up what was accepted but never handled — by a replica that died, or while the
database was away — so an acknowledged message is always answered."""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from bot.core import inbox
from bot.core.clock import Clock
from bot.core.messages import InboundMessage
from store.db import is_transient
from store.repo import open_store

log = logging.getLogger("cda_bot.intake")

WORKERS = 2
MAX_BACKLOG = 500  # messages accepted and not yet handled in this process; past it, 503
SWEEP_SECONDS = 5.0
STARTUP_HORIZON = timedelta(days=366)
RETRY_AFTER_SECONDS = 5  # what a refused platform is told to wait
# A message the database failed on is tried again every second for a while (an outage is usually
# seconds, and the sender is waiting), then less often.
BACKOFF = (*(timedelta(seconds=1),) * 10, *(timedelta(seconds=5),) * 20, timedelta(seconds=30))


def backoff(attempts: int) -> timedelta:
    return BACKOFF[min(attempts, len(BACKOFF)) - 1]


class Busy(Exception):
    """Too much accepted and not yet handled: the platform should retry later."""


class Intake:
    def __init__(self, engine: Engine, clock: Clock, handled: Callable[[], None]) -> None:
        self.engine = engine
        self.clock = clock
        self.handled = handled  # called after a message's replies are in the outbox
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._known: set[int] = set()  # queued, being handled or waiting to retry here: added once
        self._failures: dict[int, int] = {}  # database failures per message, for its backoff
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def backlog(self) -> int:
        return len(self._known)

    async def submit(self, message: InboundMessage) -> bool:
        """Store `message` for handling: True once it is durable (the platform may be acknowledged),
        False for a duplicate or chatter. Raises Busy past the backlog bound, or the database's error."""
        if self.backlog >= MAX_BACKLOG:
            raise Busy(f"{self.backlog} messages waiting")
        accepted = await asyncio.to_thread(self._accept, message)
        if accepted.inbox_id is not None:
            self._add(accepted.inbox_id)  # a retry of one stored but never handled is picked up now too
        elif accepted.answered:
            self.handled()  # what it was told waits in the outbox
        return accepted.new

    def _accept(self, message: InboundMessage) -> inbox.Accepted:
        with open_store(self.engine) as store:
            return inbox.accept(store, message, self.clock.now())

    def _add(self, inbox_id: int) -> None:
        if inbox_id not in self._known:
            self._known.add(inbox_id)
            self._queue.put_nowait(inbox_id)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"intake-{n}") for n in range(WORKERS)]
        self._tasks.append(loop.create_task(self._sweep(), name="intake-sweep"))

    async def stop(self, timeout: float) -> None:
        """Handle what was accepted here, up to `timeout` seconds; what is left stays pending in the
        database for the next process."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- workers ------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            inbox_id = await self._queue.get()
            retry_in: timedelta | None = None
            try:
                retry_in = await asyncio.to_thread(self._handle, inbox_id)
            except Exception:
                log.exception("handling a message failed", extra={"inbox_id": inbox_id})
            finally:
                self._queue.task_done()
            if retry_in is None:
                self._known.discard(inbox_id)
                self._failures.pop(inbox_id, None)
                self.handled()
            else:
                # Still ours: tried again here in a moment, whether or not the postponement could be
                # written (the sweep is the fallback for when this process dies meanwhile).
                asyncio.get_running_loop().call_later(retry_in.total_seconds(), self._requeue, inbox_id)

    def _requeue(self, inbox_id: int) -> None:
        if self._tasks:
            self._queue.put_nowait(inbox_id)
        else:
            self._known.discard(inbox_id)

    def _handle(self, inbox_id: int) -> timedelta | None:
        """Handle one message; how long to wait before trying again when the database failed."""
        now = self.clock.now()
        try:
            inbox.handle_or_fail(self.engine, inbox_id, now)
            return None
        except Exception as error:
            if not is_transient(error):
                raise
            # The database went away mid-message: nothing of it was written.
            log.warning("database unavailable, message postponed", extra={"inbox_id": inbox_id})
            self._failures[inbox_id] = attempts = self._failures.get(inbox_id, 0) + 1
            with contextlib.suppress(Exception), open_store(self.engine) as store:
                store.postpone_inbox(inbox_id, type(error).__name__, lambda tries: now + backoff(tries))
            return backoff(attempts)

    async def _sweep(self) -> None:
        # At start, everything pending: whoever accepted it before is gone, or handles it under a lock
        # this process skips. Then only what waited out its handoff or backoff.
        horizon = STARTUP_HORIZON
        while True:
            try:
                due = await asyncio.to_thread(self._due, self.clock.now() + horizon)
            except Exception as error:
                log.warning("inbox sweep failed", extra={"error": type(error).__name__})
            else:
                for inbox_id in due:
                    if self.backlog < MAX_BACKLOG:
                        self._add(inbox_id)
                horizon = timedelta()
            await asyncio.sleep(SWEEP_SECONDS)

    def _due(self, now: datetime) -> list[int]:
        with open_store(self.engine) as store:
            return store.due_inbox(now, MAX_BACKLOG)
