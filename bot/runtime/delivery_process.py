"""Sending from a process of its own (`cda-bot serve --delivery-process`).

One Python process runs one thing at a time: receiving a message (the platform's request, its
signature, Bolt) and sending replies (the SDKs' HTTP calls) take turns on one core. With this option
the sends run in a child process on another core, which claims due outbox rows as any deliverer does
(leases: a row goes out once, whoever claims it) and is woken through its stdin whenever this process
queues something. The server itself still stores, handles and records what platforms report later.

The child is started again if it dies (what it had claimed goes out once its lease runs out), and it
ends when its stdin closes: when the server stops (it first sends what it holds, for a while) or is
killed (nothing is left behind running).

What the child sent, and what failed, it reports on its stdout once a second; the server adds that to
its own counters, so `/metrics` counts sends as it does without the option. A child killed outright
takes up to a second of its counts with it (the rows themselves are in the outbox, counted there)."""

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine

from bot.core.clock import Clock, SystemClock
from bot.core.inbox import Claiming
from bot.core.messages import Adapter
from bot.runtime import heap, metrics
from bot.runtime.delivery import Deliverer
from bot.runtime.turns import Turns

log = logging.getLogger("cda_bot.delivery_process")

RESTART_SECONDS = 1.0  # a child that keeps dying is not started in a tight loop
DRAIN_SECONDS = 10.0  # how long the child sends what it holds once told to stop
REPORT_SECONDS = 1.0  # how often the child reports its send counts


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

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._supervisor.done()

    @property
    def in_flight(self) -> int:
        return 0  # held by the child

    def claiming(self) -> Claiming | None:
        return None  # the child claims what it sends

    @property
    def child_pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.returncode is None else None

    def start(self) -> None:
        self._done = False
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="delivery-process")

    async def _supervise(self) -> None:
        while not self._done:
            try:
                self._child = await asyncio.create_subprocess_exec(
                    *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self.env
                )
            except OSError as error:  # out of processes or memory for a moment: try again
                log.error("delivery process not started", extra={"error": str(error)})
                await asyncio.sleep(RESTART_SECONDS)
                continue
            log.info("delivery process started", extra={"pid": self._child.pid})
            self.wake()  # whatever was queued while there was no child
            assert self._child.stdout is not None
            # Read until the child's stdout closes, which is when it ends: its last report counts too.
            await _count_reports(self._child.stdout)
            code = await self._child.wait()
            if self._done:
                return
            log.error("delivery process ended, starting it again", extra={"code": code})
            await asyncio.sleep(RESTART_SECONDS)

    def wake(self) -> None:
        child = self._child
        if child is None or child.stdin is None or child.returncode is not None:
            return  # the next child looks at once
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            child.stdin.write(b"\n")

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


def command() -> list[str]:
    return [sys.executable, "-m", "bot.runtime.delivery_process"]


async def _count_reports(reports: asyncio.StreamReader) -> None:
    told = False
    while line := await reports.readline():
        try:
            metrics.add_sends(json.loads(line))
        except (ValueError, TypeError, AttributeError):
            if not told:  # the same fault again in every report: said once per child
                log.warning(
                    "delivery process report not understood",
                    extra={"line": line[:200].decode(errors="replace")},
                )
                told = True


def _report(last: dict[str, float]) -> None:
    """Write what was counted since `last` (which it then holds) to stdout, as one line, if anything was."""
    now = metrics.send_totals()
    added = {key: value - last.get(key, 0.0) for key, value in now.items() if value > last.get(key, 0.0)}
    last.update(now)
    if added:
        sys.stdout.write(json.dumps(added) + "\n")
        sys.stdout.flush()


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
    hub.deliverer.start()
    heap.keep_what_is_loaded()
    reported: dict[str, float] = {}
    reporting = asyncio.create_task(_report_every(REPORT_SECONDS, reported))
    told = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(told), sys.stdin)
    try:
        while await told.read(4096):
            hub.deliverer.wake()
    finally:
        await hub.deliverer.stop(DRAIN_SECONDS)
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
