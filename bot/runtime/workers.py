"""`serve --workers N`: N server processes on one listening socket, each the whole bot (adapters,
intake, deliverer), the first also the scheduler. One Python process runs on one core at a time; this
is how `serve` uses more than one.

This process only binds the port, starts the workers, starts again one that dies (SIGKILL, out of
memory) and stops them all on SIGTERM or Ctrl-C, each finishing what it accepted as `serve` does. The
kernel hands each new connection to one of the workers waiting on the socket. What they share lives
in the database: a message is stored once, whichever worker a platform's retry reaches; on SQLite
they take turns to write through the lock file beside it (bot/runtime/turns.py). Their metrics are
added up at `/metrics` through prometheus-client's multiprocess mode, in a folder this process makes
and removes."""

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


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The socket every worker accepts on, bound here so that it is bound once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def supervise(
    count: int,
    sock: socket.socket,
    command: Callable[[int, int], Sequence[str]],
    environment: Mapping[str, str],
    stop_seconds: float,
) -> int:
    """Run `count` workers, `command(index, fd)` each with `environment` added to this process's, on
    `sock` until SIGTERM or SIGINT; the exit status for `serve`: 0 once they have stopped, 1 if a
    worker kept exiting at start."""
    folder = tempfile.mkdtemp(prefix="cda-bot-metrics-")
    env = {**os.environ, **environment, MULTIPROC_DIR: folder}
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start(index: int, early_exits: int = 0) -> _Worker:
        # In a process group of its own: Ctrl-C at a terminal reaches this process alone, which
        # stops each worker once (a second signal would make uvicorn skip finishing what it has).
        process = subprocess.Popen(
            command(index, sock.fileno()),
            env=env,
            pass_fds=(sock.fileno(),),
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
                early = time.monotonic() - worker.started < EARLY_SECONDS
                exits = worker.early_exits + 1 if early else 0
                log.warning("worker exited", extra={"worker": worker.index, "code": code, "early": early})
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
