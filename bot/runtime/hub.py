"""What every adapter talks to: `accept` a verified message (the platform is acknowledged only once it
returns), and the one deliverer that sends every reply and unprompted message through the adapters."""

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.core.messages import Adapter, DeliveryError, InboundMessage
from bot.runtime.delivery import Deliverer, DeliveryReport
from bot.runtime.intake import RETRY_AFTER_SECONDS, Busy, Intake, StillWriting, Unconfirmed
from bot.runtime.logs import Tally
from bot.runtime.turns import Turns, beside
from store.repo import Store, open_store

log = logging.getLogger("cda_bot.hub")


Write = Callable[[Store, datetime], None]  # a transaction an adapter needs before it answers
DelivererType = Callable[..., Deliverer]
ACCEPT_SECONDS = 2.0  # Slack waits 3 s for its acknowledgement
DECIDE_SECONDS = 2.6  # how long a message whose write is under way at ACCEPT_SECONDS may still take
REPORT_PAUSES = (0.2, 0.5, 1.0)
TELL_SECONDS = 10.0  # for the one call that tells a person their message was not stored after all


class Unavailable(Exception):
    """The message could not be stored (database unreachable, too much waiting): answer the platform
    503 with `retry_after`, so it sends the message again later."""

    def __init__(self, reason: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Overloaded(Unavailable):
    """Refused for the messages this process already holds, not for the database: telling the person
    would be one more call for a server that has too many, and the platform sends it again later."""


class Undecided(Unavailable):
    """The message's write was still under way at the deadline, or its COMMIT failed and whether it took
    could not be learned: it may yet be stored, and answered. A platform that sends it again may be
    refused (its retry is a duplicate if it was stored), but a person must not be told that nothing was
    saved before `outcome` says so (`tell_if_not_stored`)."""

    def __init__(self, reason: str, outcome: asyncio.Future[Any] | None) -> None:
        super().__init__(reason)
        # Settled once the write ends, or once the inbox tells whether a COMMIT that failed took: stored,
        # the database's error, or Unconfirmed (never learned). None: never to be known here.
        self.outcome = outcome


class Hub:
    def __init__(self, engine: Engine, clock: Clock, deliverer: DelivererType = Deliverer) -> None:
        """`deliverer`: how replies and unprompted messages go out; `Deliverer` sends from this
        process, `DeliveryProcess` from a child (bot/runtime/delivery_process.py)."""
        self.engine = engine
        self.clock = clock
        self.adapters: dict[str, Adapter] = {}
        # One deliverer for the process, so rate limits hold across replies and scheduler passes.
        # SQLite has one writer: this process's writers take turns, storing arrivals first, and with
        # other processes on the same file (a delivery process, a second server).
        sqlite = engine.dialect.name == "sqlite"
        self.turns = Turns(enabled=sqlite, shared=beside(engine.url.database) if sqlite else None)
        self.deliverer = deliverer(engine, self.adapters, clock, turns=self.turns)
        self.intake = Intake(engine, clock, self.deliverer, self.turns, self.deliverer.handoff())
        self._refusals = Tally(log, "backlog full, messages refused")
        self._telling: set[asyncio.Task[None]] = set()

    def register(self, adapter: Adapter) -> None:
        """An adapter that can deliver to its platform's identities, at the rate it asks for if any."""
        self.adapters[adapter.platform] = adapter
        rate = getattr(adapter, "messages_per_second", None)
        if rate:
            self.deliverer.limiter.set_rate(adapter.platform, rate)

    async def accept(self, message: InboundMessage) -> bool:
        """Store `message` durably for handling; True if new, False for a duplicate or chatter.
        Raises Unavailable when it was not stored (the platform must not be acknowledged), Undecided
        when it may be: still being written at the platform's deadline, or its COMMIT failed and the
        inbox could not be read to say."""
        try:
            # Past ACCEPT_SECONDS the platform's own deadline is near: a message not yet being written is
            # withdrawn, so a 503 (or "nothing was saved") is true. One being written may be stored
            # still: its outcome is waited for, up to DECIDE_SECONDS.
            return await self.intake.submit(message, ACCEPT_SECONDS, DECIDE_SECONDS)
        except Busy as busy:
            self._refusals.count(platform=message.platform)
            raise Overloaded(str(busy)) from None
        except StillWriting as writing:
            log.warning("message still being stored at its deadline", extra={"platform": message.platform})
            writing.outcome.add_done_callback(functools.partial(_decided, message.platform))
            raise Undecided("still being stored", writing.outcome) from None
        except Unconfirmed:
            log.warning("message may be stored, its commit unconfirmed", extra={"platform": message.platform})
            raise Undecided("may be stored", None) from None
        except Exception as error:
            log.warning(
                "message not stored",
                extra={"platform": message.platform, "error": type(error).__name__},
            )
            raise Unavailable("database unavailable") from None

    def tell_if_not_stored(self, undecided: Undecided, tell: Callable[[], Awaitable[object]]) -> None:
        """Should the write still under way at the deadline fail after all, `tell` the person nothing was
        saved (so far they were told an answer would follow, or nothing), in the background, best
        effort. `tell` reaches the platform directly, not through the outbox: the database is what
        failed. Stored, the message is answered as usual."""
        if undecided.outcome is None:
            return
        task = asyncio.get_running_loop().create_task(self._tell_if_not_stored(undecided.outcome, tell))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def _tell_if_not_stored(
        self, outcome: asyncio.Future[Any], tell: Callable[[], Awaitable[object]]
    ) -> None:
        # `wait`, not `await`: cancelled at stop, this would cancel the outcome with it, and the writer
        # would have no one left to settle.
        await asyncio.wait([outcome])
        # Unconfirmed: it may be stored (and answered after the handoff), so nothing is said.
        if outcome.cancelled() or outcome.exception() is None or isinstance(outcome.exception(), Unconfirmed):
            return
        try:
            async with asyncio.timeout(TELL_SECONDS):
                await tell()
        except Exception as error:
            log.warning("sender not told their message was not stored", extra={"error": _described(error)})
            return
        log.info("sender told their message was not stored after all")

    async def record(self, write: Write) -> None:
        """A write an adapter needs durable before it answers its platform (an installation, a
        removal), bounded and refused like `accept`; what it queued is sent at once."""

        def run() -> None:
            with self.turns.turn(urgent=True), open_store(self.engine) as store:
                write(store, self.clock.now())

        try:
            await asyncio.wait_for(asyncio.to_thread(run), ACCEPT_SECONDS)
        except Exception as error:
            log.warning("write not stored", extra={"error": type(error).__name__})
            raise Unavailable("database unavailable") from None
        self.deliverer.wake()

    async def report_delivery(
        self, platform: str, platform_id: str, delivery: str, code: str | None, error: DeliveryError | None
    ) -> bool:
        """A platform's later word on a message it accepted, kept on its outbox row (see
        `Deliverer.reported`). A report can overtake the record of the send it is about, so an unknown
        id is looked for again for a moment. Raises Unavailable when the database cannot take it."""
        try:
            for pause in REPORT_PAUSES:
                found = await asyncio.wait_for(
                    self.deliverer.reported(platform, platform_id, delivery, code, error), ACCEPT_SECONDS
                )
                if found:
                    return True
                await asyncio.sleep(pause)
            if await self.deliverer.reported(platform, platform_id, delivery, code, error):
                return True  # the last look, after the last pause
        except Exception as failure:
            log.warning("delivery report not stored", extra={"error": type(failure).__name__})
            raise Unavailable("database unavailable") from None
        log.info("delivery report for no known message", extra={"platform": platform, "id": platform_id})
        return False

    @property
    def full(self) -> bool:
        """No room for another message: it would be refused (Busy) after its body was read."""
        return self.intake.full

    @property
    def backlog(self) -> dict[str, int]:
        return {"inbox": self.intake.backlog, "outbox_in_flight": self.deliverer.in_flight}

    async def start(self) -> None:
        await self.intake.start()
        self.deliverer.start()

    async def stop(self, timeout: float) -> None:
        """Handle and send what this process accepted and claimed, within about `timeout` seconds."""
        await self.intake.stop(timeout / 2)
        await self.deliverer.stop(timeout / 2)
        if self._telling:
            # While the adapters are open still: a write under way may yet fail, and its sender be told.
            _, untold = await asyncio.wait(self._telling, timeout=TELL_SECONDS)
            for task in untold:
                task.cancel()
            await asyncio.gather(*untold, return_exceptions=True)
        self.turns.close()

    async def deliver_due(self) -> DeliveryReport:
        return await self.deliverer.deliver_due()


def _decided(platform: str, outcome: asyncio.Future[Any]) -> None:
    """What became of a message past its deadline. Read here whether or not an adapter waits for it, so
    an error is never reported as unretrieved."""
    if outcome.cancelled():
        return
    error = outcome.exception()
    if error is None:
        log.info("message stored after its deadline", extra={"platform": platform})
    elif isinstance(error, Unconfirmed):
        log.warning("message may be stored, its commit unconfirmed", extra={"platform": platform})
    else:
        log.warning(
            "message not stored after its deadline", extra={"platform": platform, "error": _described(error)}
        )


def _described(error: BaseException) -> str:
    # A database error's text can quote the message, and an HTTP error's the secret response URL.
    return str(error)[:200] if isinstance(error, DeliveryError) else type(error).__name__
