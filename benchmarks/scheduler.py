"""Scheduler passes for 80, 1,000 and 10,000 cities: the first (everything due at once: reminders,
nudges, every coach's digest, stale blockers), then one a minute later with nothing new.

Each program is built once and kept (bench/sched-*.db, PostgreSQL databases `bench_sched_*`); every
run copies it, so the first pass always starts from an empty outbox and no plans. On SQLite the
longest a pass held the write lock is measured, and how long an `update:` sent during the
10,000-city pass waited for its reply.
"""

import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from benchmarks.common import CACHE, Figure, backends, figure, label, message, server_url
from benchmarks.fixtures import NOW, Program, build, built, member
from bot.core.clock import FixedClock
from bot.core.i18n import translator
from bot.core.inbox import Dispatcher
from bot.runtime.delivery import Deliverer
from scheduler.runner import PassRunner
from store.db import READER, make_engine, upgrade

SIZES = [int(n) for n in os.environ.get("BENCH_SCHEDULER_SIZES", "80,1000,10000").split(",")]
FIRST_MS = 2000.0  # a pass for 10,000 cities
NOTHING_NEW_MS = 200.0
LOCK_MS = 50.0


def program(cities: int) -> Program:
    return Program(cities=cities, updates=20 * cities, blockers=2 * cities)


def _template(backend: str, cities: int) -> str:
    """The URL of a kept database holding the program for `cities`, built on first use."""
    prog = program(cities)
    if backend == "sqlite":
        CACHE.mkdir(exist_ok=True)
        path = CACHE / f"sched-{prog.name}.db"
        url = f"sqlite:///{path}"
    else:
        url = _postgres_url(f"bench_sched_{cities}")
    engine = make_engine(url)
    try:
        if not built(engine, prog):
            print(f"  building {prog.name} on {label(backend)} (kept for later runs) …", flush=True)
            if backend == "sqlite":
                engine.dispose()
                for leftover in CACHE.glob(f"sched-{prog.name}.db*"):
                    leftover.unlink()
                engine = make_engine(url)
            build(engine, prog)
        upgrade(engine)
    finally:
        engine.dispose()
    return url


def _postgres_url(name: str, template: str | None = None) -> str:
    server = make_url(server_url())
    maintenance = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with maintenance.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if template is not None and exists:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                exists = None
            if exists is None:
                copy = f' TEMPLATE "{template}"' if template else ""
                connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        maintenance.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


@contextmanager
def _copy(backend: str, cities: int, folder: Path) -> Iterator[Engine]:
    """A fresh copy of the program, dropped afterwards."""
    url = _template(backend, cities)
    if backend == "sqlite":
        source = Path(str(make_url(url).database))
        target = folder / f"sched-{cities}.db"
        shutil.copy(source, target)
        engine = make_engine(f"sqlite:///{target}")
    else:
        name = f"bench_sched_{cities}_run"
        engine = make_engine(_postgres_url(name, template=f"bench_sched_{cities}"))
    try:
        yield engine
    finally:
        engine.dispose()
        if backend == "postgresql":
            server = create_engine(make_url(server_url()), isolation_level="AUTOCOMMIT")
            with server.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "bench_sched_{cities}_run" WITH (FORCE)'))
            server.dispose()


class LockWatch:
    """How long each write transaction held SQLite's write lock (from BEGIN IMMEDIATE to commit)."""

    def __init__(self, engine: Engine) -> None:
        self.longest = 0.0
        self.count = 0
        self._started: dict[int, float] = {}
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, connection: Any) -> None:
        if not connection.get_execution_options().get(READER):
            self._started[id(connection)] = time.perf_counter()

    def _end(self, connection: Any) -> None:
        started = self._started.pop(id(connection), None)
        if started is not None:
            self.count += 1
            self.longest = max(self.longest, (time.perf_counter() - started) * 1000)

    def reset(self) -> None:
        self.longest, self.count = 0.0, 0


def _pass(engine: Engine, at: Any) -> tuple[float, int]:
    clock = FixedClock(at)
    runner = PassRunner(engine, Deliverer(engine, {}, clock), clock)
    started = time.perf_counter()
    report = runner._plan()
    return (time.perf_counter() - started) * 1000, len(report.planned)


def _waits_during_pass(engine: Engine, at: Any) -> tuple[float, list[float]]:
    """Run a pass while a member sends updates one after another; the pass's time and each update's."""
    dispatcher = Dispatcher(engine, FixedClock(at))
    waits: list[float] = []
    done = threading.Event()

    def member_talks() -> None:
        n = 0
        while not done.is_set():
            started = time.perf_counter()
            dispatcher.handle(message(member(1 + n % 50), f"update: during the pass {n}"))
            waits.append((time.perf_counter() - started) * 1000)
            n += 1
            time.sleep(0.005)

    talker = threading.Thread(target=member_talks)
    talker.start()
    try:
        spent, _planned = _pass(engine, at)
    finally:
        done.set()
        talker.join()
    return spent, waits


BUSY = NOW.replace(hour=13)  # Monday 08:00 in Bogotá: the digests of the coaches of ten cities fall due


def bench() -> list[Figure]:
    for language in ("en", "es", "pt"):
        translator(language).gettext("")  # the catalogs load once a process, not once a pass
    figures: list[Figure] = []
    for backend in backends():
        name = label(backend)
        print(f"Scheduler, {name}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            for cities in SIZES:
                biggest = cities == max(SIZES)
                with _copy(backend, cities, Path(folder)) as engine:
                    watch = LockWatch(engine) if backend == "sqlite" else None
                    first, planned = _pass(engine, NOW)
                    figures.append(
                        figure(
                            f"scheduler {name}: first pass, {cities:,} cities, all due ({planned:,})",
                            first,
                            "ms",
                            FIRST_MS if biggest else None,
                        )
                    )
                    nothing = statistics.median(
                        _pass(engine, NOW + timedelta(minutes=m))[0] for m in range(1, 6)
                    )
                    figures.append(
                        figure(
                            f"scheduler {name}: pass with nothing new, {cities:,} cities",
                            nothing,
                            "ms",
                            NOTHING_NEW_MS if biggest else None,
                        )
                    )
                    if watch is not None and biggest:
                        figures.append(
                            figure(
                                f"scheduler {name}: longest write lock in those passes",
                                watch.longest,
                                "ms",
                                LOCK_MS,
                            )
                        )
                if not biggest:
                    continue
                with _copy(backend, cities, Path(folder)) as engine:
                    _pass(engine, BUSY - timedelta(minutes=1))
                    busy, planned = _pass(engine, BUSY)
                    figures.append(
                        figure(
                            f"scheduler {name}: Monday 08:00 Bogotá, {cities:,} cities ({planned:,})",
                            busy,
                            "ms",
                            FIRST_MS,
                        )
                    )
                if backend == "sqlite":
                    with _copy(backend, cities, Path(folder)) as engine:
                        _spent, waits = _waits_during_pass(engine, NOW)
                    if waits:
                        figures.append(
                            figure(
                                f"scheduler {name}: longest `update:` during the first pass ({len(waits)})",
                                max(waits),
                                "ms",
                            )
                        )
    return figures


if __name__ == "__main__":
    bench()
