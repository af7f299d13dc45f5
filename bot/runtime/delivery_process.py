"""Handling and sending from a process of its own (`cda-bot serve --delivery-process`).

One Python process runs one thing at a time: receiving a message (the platform's request, its
signature, Bolt), handling it and sending the replies take turns on one core, and an acknowledgement
waits for its turn behind the others. With this option the server only receives and stores: a child
process on another core handles what was stored and sends what is due. The server tells the child, on
its stdin, the inbox ids it stored (`h 12 13`) and that something was queued (an empty line); the child
handles the ids as the server would (a message is handled once, under its row lock, whoever handles
it) and claims due outbox rows as any deliverer does (leases: a row goes out once, whoever claims it).
The server still records what platforms report later, and runs the scheduler.

The child is started again if it dies: it then handles everything still pending (what it held, what
was handed to no child), and what it had claimed goes out once its lease runs out. Until a child has
done that, `/readyz` says `"delivery_process": "starting"`; `cda_bot_delivery_process_exits_total`
counts the children that died. A child that keeps dying soon after its start (counted as `serve
--workers` counts a worker's) will not handle much here: `/readyz` then says `"failing"` with 503, so
that a proxy sends new messages to a replica that handles them, and the next child is started after
longer and longer pauses (what arrives meanwhile is still stored). It ends when its
stdin closes: when the server stops (it first handles and sends what it holds, for a while) or is
killed (nothing is left behind running).

On its stdout the child reports how many messages wait to be handled there whenever that changes (at
most ten times a second), which the server counts against its backlog bound (503 past it), and once a
second what it sent and what failed, which the server adds to its own counters, so `/metrics` counts
sends as it does without the option. A child killed outright takes up to a second of its counts with it
(the rows themselves are in the outbox, counted there)."""

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Engine

from bot.core.clock import Clock, SystemClock
from bot.core.inbox import Claiming
from bot.core.messages import Adapter
from bot.runtime import heap, metrics, workers
from bot.runtime.delivery import FAILING, Deliverer
from bot.runtime.intake import Handoff, Intake
from bot.runtime.turns import Turns

log = logging.getLogger("cda_bot.delivery_process")

RESTART_SECONDS = 1.0  # a child that keeps dying is not started in a tight loop
RESTART_SECONDS_MAX = 30.0  # the longest pause, doubling from RESTART_SECONDS, once it keeps dying early
DRAIN_SECONDS = 10.0  # how long the child handles, and then sends, what it holds once told to stop
REPORT_SECONDS = 1.0  # how often the child reports its send counts
BACKLOG_SECONDS = 0.1  # how often the child looks whether its backlog changed, to report it


class DeliveryProcess(Deliverer):
    """The server's deliverer when the sends happen in a child process: `wake` tells the child."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        engine: Engine,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        turns: Turns | None = None,
    ) -> None:
        super().__init__(engine, adapters, clock, turns=turns)
        self.command = list(command)
        self.env = dict(env)
        self._child: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._done = False
        # The current child's: ids written to it; and from its last report, how many of them it had
        # read, and how many messages waited to be handled there.
        self._handed = self._read = self._waiting = 0
        # The current child has reported: it handled what was pending, and listens. False again once
        # it ended, until the next one reports.
        self._reported = False
        # Children in a row that ended (or could not be started) within EARLY_SECONDS of their start,
        # and when the current one started.
        self._early_exits = 0
        self._started = 0.0

    @property
    def state(self) -> str:
        """`running` once the current child has started handling (it reports first after sweeping up
        what was pending), `starting` before that and while a dead child is replaced; `failing` after
        EARLY_EXITS early ends in a row, until a child has handled for EARLY_SECONDS."""
        lasting = self._reported and time.monotonic() - self._started >= workers.EARLY_SECONDS
        if self._early_exits >= workers.EARLY_EXITS and not lasting:
            return FAILING
        return "running" if self._reported else "starting"

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._supervisor.done()

    @property
    def in_flight(self) -> int:
        return 0  # held by the child

    def claiming(self) -> Claiming | None:
        return None  # the child claims what it sends

    def handoff(self) -> Handoff:
        return self

    @property
    def backlog(self) -> int:
        """What waits in the child, and what was written to it since it last said so."""
        return self._waiting + max(0, self._handed - self._read)

    def hand(self, inbox_ids: list[int]) -> None:
        """Stored messages for the child to handle. With no child running, the next one finds them
        pending (it starts by handling everything pending)."""
        if inbox_ids and self._tell(("h " + " ".join(map(str, inbox_ids)) + "\n").encode()):
            self._handed += len(inbox_ids)

    @property
    def child_pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.returncode is None else None

    def start(self) -> None:
        self._done = False
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="delivery-process")

    async def _supervise(self) -> None:
        while not self._done:
            self._started = time.monotonic()
            try:
                self._child = await asyncio.create_subprocess_exec(
                    *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self.env
                )
            except OSError as error:  # out of processes or memory for a moment: try again
                log.error("delivery process not started", extra={"error": str(error)})
                await self._pause()
                continue
            log.info("delivery process started", extra={"pid": self._child.pid})
            self._handed = self._read = self._waiting = 0  # what the last one held, this one sweeps up
            self.wake()  # whatever was queued while there was no child
            assert self._child.stdout is not None
            # Read until the child's stdout closes, which is when it ends: its last report counts too.
            await _read_reports(self._child.stdout, self._backlog_reported)
            self._reported = False
            code = await self._child.wait()
            if self._done:
                return
            log.error("delivery process ended, starting it again", extra={"code": code})
            metrics.DELIVERY_PROCESS_EXITS.inc()
            await self._pause()

    async def _pause(self) -> None:
        self._early_exits = workers.exits_in_a_row(self._early_exits, self._started)
        if self._early_exits == workers.EARLY_EXITS:
            log.error(
                "delivery process keeps ending soon after its start: /readyz says failing",
                extra={"early_exits": self._early_exits},
            )
        await asyncio.sleep(restart_pause(self._early_exits))

    def _backlog_reported(self, waiting: int, read: int) -> None:
        self._waiting, self._read = waiting, read
        self._reported = True

    def wake(self) -> None:
        self._tell(b"\n")

    def _tell(self, line: bytes) -> bool:
        child = self._child
        if child is None or child.stdin is None or child.returncode is not None:
            return False  # the next child looks at once
        try:
            child.stdin.write(line)
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False
        return True

    async def stop(self, timeout: float) -> None:
        """Tell the child to send what it holds and end, up to `timeout` seconds; then it is killed
        (what it still held goes out from the next deliverer once its lease runs out)."""
        self._done = True
        child = self._child
        if child is not None and child.returncode is None:
            if child.stdin is not None:
                child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), timeout)
            except TimeoutError:
                child.kill()
                await child.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None


def restart_pause(early_exits: int) -> float:
    """Before the next child: RESTART_SECONDS, doubled for each early end in a row from EARLY_EXITS
    of them on, up to RESTART_SECONDS_MAX."""
    beyond = max(0, early_exits - workers.EARLY_EXITS + 1)
    return float(min(RESTART_SECONDS * 2**beyond, RESTART_SECONDS_MAX))


def command() -> list[str]:
    return [sys.executable, "-m", "bot.runtime.delivery_process"]


async def _read_reports(reports: asyncio.StreamReader, backlog: Callable[[int, int], None]) -> None:
    """The child's reports: its backlog and how many handed ids it read (`{"backlog": 3, "read":
    40}`), given to `backlog`, or send counts."""
    told = False
    while line := await reports.readline():
        try:
            report = json.loads(line)
            if isinstance(report, dict) and BACKLOG in report:
                waiting, read = report[BACKLOG], report[READ]
                if not (_count(waiting) and _count(read)):
                    raise ValueError("not a backlog")
                backlog(waiting, read)
            else:
                metrics.add_sends(report)
        except (ValueError, TypeError, AttributeError):
            if not told:  # the same fault again in every report: said once per child
                log.warning(
                    "delivery process report not understood",
                    extra={"line": line[:200].decode(errors="replace")},
                )
                told = True


BACKLOG, READ = "backlog", "read"


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _say(report: Mapping[str, float]) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


async def _report_backlog(intake: Intake) -> None:
    """What waits here and how many handed ids were read, whenever either changed."""
    said: tuple[int, int] | None = None
    while True:
        now = (intake.backlog, intake.taken)
        if now != said:
            said = now
            _say({BACKLOG: now[0], READ: now[1]})
        await asyncio.sleep(BACKLOG_SECONDS)


def _report(last: dict[str, float]) -> None:
    """Write what was counted since `last` (which it then holds) to stdout, as one line, if anything was."""
    now = metrics.send_totals()
    added = {key: value - last.get(key, 0.0) for key, value in now.items() if value > last.get(key, 0.0)}
    last.update(now)
    if added:
        _say(added)


async def _report_every(seconds: float, last: dict[str, float]) -> None:
    while True:
        await asyncio.sleep(seconds)
        _report(last)


async def _send_until_stdin_closes(database_url: str) -> None:
    # Imported here: the server imports this module for DeliveryProcess alone.
    from bot.runtime.hub import Hub
    from bot.runtime.serve import platform_adapters
    from bot.runtime.settings import Settings
    from store.db import make_engine

    settings = Settings()
    hub = Hub(make_engine(database_url), SystemClock())
    adapters, _ = platform_adapters(settings, hub)
    for adapter in adapters:
        hub.register(adapter)
        await adapter.start()
    await hub.start()  # handling everything pending first: what an earlier child left, what it missed
    heap.keep_what_is_loaded()
    reported: dict[str, float] = {}
    reporting = asyncio.create_task(_report_every(REPORT_SECONDS, reported))
    backlog = asyncio.create_task(_report_backlog(hub.intake))
    told = asyncio.StreamReader(limit=2**20)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(told), sys.stdin)
    try:
        while line := await told.readline():
            if line.startswith(b"h "):
                hub.intake.take(int(word) for word in line.split()[1:])
            else:
                hub.deliverer.wake()
    finally:
        await hub.stop(2 * DRAIN_SECONDS)  # half to handle, half to send (`Hub.stop`)
        backlog.cancel()
        reporting.cancel()
        with contextlib.suppress(Exception):
            _report(reported)  # what was sent while draining
        for adapter in reversed(adapters):
            with contextlib.suppress(Exception):
                await adapter.stop()


def main() -> None:
    from bot.runtime import logs
    from bot.runtime.serve import secrets_of
    from bot.runtime.settings import Settings

    # Ctrl-C in a terminal reaches the whole process group: the server stops first and closes stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(secrets_of(Settings()))
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    run(_send_until_stdin_closes(os.environ["DATABASE_URL"]))


if __name__ == "__main__":
    main()
