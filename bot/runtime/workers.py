"""`serve --workers N`: N server processes on one port, each the whole bot (adapters,
intake, deliverer), the first also the scheduler. One Python process runs on one core at a time; this
is how `serve` uses more than one.

This process only binds the port, starts the workers, starts again one that dies (SIGKILL, out of
memory) and stops them all on SIGTERM or Ctrl-C, each finishing what it accepted as `serve` does. On
Linux each worker has a listening socket of its own on the port (SO_REUSEPORT), and the kernel spreads
new connections evenly over them: a worker takes every connection waiting on its socket at once
(bot/runtime/serve.py), so on one shared socket whichever woke first took most of a burst. This process
keeps each socket open, so what waits on a dead worker's is taken by the worker started in its place.
Elsewhere the workers share one socket.

What the workers share lives in the database: a message is stored once, whichever worker a platform's
retry reaches; on SQLite they take turns to write through the lock file beside it
(bot/runtime/turns.py). Their metrics are added up at `/metrics` through prometheus-client's
multiprocess mode, in a folder this process makes and removes."""

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from prometheus_client import multiprocess

log = logging.getLogger("cda_bot.workers")

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
POLL_SECONDS = 0.2
# A worker that exits this soon after it started, this many times in a row, will not get far by being
# started again (a database that refuses it, a port it cannot use): the server stops and says so.
EARLY_SECONDS = 10.0
EARLY_EXITS = 3
PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float
    early_exits: int = 0


def exits_in_a_row(before: int, started: float) -> int:
    """Early exits in a row, with one just now of a process started at `started` (`time.monotonic()`):
    one more than `before` if it ran less than EARLY_SECONDS, else none."""
    return before + 1 if time.monotonic() - started < EARLY_SECONDS else 0


def listening_sockets(host: str, port: int, count: int, backlog: int = 2048) -> list[socket.socket]:
    """The sockets the workers accept on, one each (one for all of them where the kernel cannot spread
    connections over several), bound here so that a port in use is one error before any worker starts.
    With port 0, all on the one port the system gives."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    spread = sys.platform == "linux"
    sockets: list[socket.socket] = []
    try:
        if spread:
            # Sockets with SO_REUSEPORT share a port with any other that has it (of the same user): a
            # second `serve` started on this port by mistake would take half its connections, unseen.
            # A plain bind fails on a port anything listens on.
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
                port = probe.getsockname()[1]
        for _ in range(count if spread else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spread:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def supervise(
    count: int,
    sockets: Sequence[socket.socket],
    command: Callable[[int, int], Sequence[str]],
    environment: Mapping[str, str],
    stop_seconds: float,
) -> int:
    """Run `count` workers, `command(index, fd)` each with `environment` added to this process's,
    worker n on `sockets[n]` (or the one socket), until SIGTERM or SIGINT; the exit status for `serve`:
    0 once they have stopped, 1 if a worker kept exiting at start."""
    folder = tempfile.mkdtemp(prefix="cda-bot-metrics-")
    env = {**os.environ, **environment, MULTIPROC_DIR: folder}
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start(index: int, early_exits: int = 0) -> _Worker:
        # In a process group of its own: Ctrl-C at a terminal reaches this process alone, which
        # stops each worker once (a second signal would make uvicorn skip finishing what it has).
        fd = sockets[index % len(sockets)].fileno()
        process = subprocess.Popen(
            command(index, fd),
            env=env,
            pass_fds=(fd,),
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        log.info("worker started", extra={"worker": index, "pid": process.pid})
        return _Worker(index, process, time.monotonic(), early_exits)

    workers = [start(index) for index in range(count)]
    status = 0
    try:
        while not stopping:
            time.sleep(POLL_SECONDS)
            for n, worker in enumerate(workers):
                code = worker.process.poll()
                if code is None or stopping:
                    continue
                multiprocess.mark_process_dead(worker.process.pid, folder)
                exits = exits_in_a_row(worker.early_exits, worker.started)
                log.warning("worker exited", extra={"worker": worker.index, "code": code, "early": exits > 0})
                if exits >= EARLY_EXITS:
                    log.error("worker keeps exiting at start: stopping", extra={"worker": worker.index})
                    stopping.append(0)
                    status = 1
                    break
                workers[n] = start(worker.index, exits)
    finally:
        _stop_all(workers, stop_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
        shutil.rmtree(folder, ignore_errors=True)
    return status


def _die_with_parent() -> None:
    """In the worker, before it runs: SIGTERM when this process dies, even by SIGKILL, so no worker is
    left serving on its own (Linux; elsewhere a worker outlives a killed parent)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_all(workers: list[_Worker], seconds: float) -> None:
    """SIGTERM to each: it stops taking requests, finishes those in flight and what it accepted; one
    still running after `seconds` is killed (what it accepted is still in the database)."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + seconds
    for worker in workers:
        try:
            worker.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop in time: killed", extra={"worker": worker.index})
            worker.process.kill()
            worker.process.wait()


def worker_command(index: int, fd: int, scheduler: bool) -> list[str]:
    """`cda-bot serve` for one worker: on the inherited socket, the scheduler in the first only."""
    command = [sys.executable, "-m", "bot.cli", "serve", "--listen-fd", str(fd), "--worker", str(index)]
    if not (scheduler and index == 0):
        command.append("--no-scheduler")
    return command
