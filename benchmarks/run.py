"""`make bench`: every benchmark in one go, one table of figures beside their targets or floors, and
the same figures as JSON in bench/results/<timestamp>.json.

Runs on SQLite, and on PostgreSQL too where TEST_DATABASE_URL names a server. Each benchmark is a
function returning its figures (benchmarks.common.figure); add one by adding it to BENCHMARKS.
"""

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from benchmarks import dashboard, delivery, inbound, peer, scheduler, views
from benchmarks.common import ROOT, Figure, backends, figure, fresh_database, label, table_line
from bot import admin
from bot.core.clock import FixedClock, SystemClock
from bot.core.inbox import Dispatcher
from bot.core.messages import InboundMessage, Reply
from bot.runtime.hub import Hub
from store.repo import open_store

CITIES = 80
MEMBERS_PER_CITY = 3
NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # a Monday afternoon: reminders and digests are due
ZONES = ["America/Chicago", "America/Bogota", "America/Sao_Paulo", "Europe/London", "America/Santiago"]
RESULTS = ROOT / "bench" / "results"


def seed(engine: Engine) -> None:
    with open_store(engine) as store:
        for n in range(CITIES):
            slug = f"city-{n:02d}"
            admin.add_city(
                store,
                slug,
                f"City {n}",
                ZONES[n % len(ZONES)],
                NOW - timedelta(days=60),
                None,
                "implementation",
                ("en", "es", "pt")[n % 3],
            )
            for m in range(MEMBERS_PER_CITY):
                admin.add_member(store, f"console:{slug}-{m}", slug, NOW)
            admin.add_session(
                store, slug, f"2026-09-0{1 + n % 5}T10:00", NOW, 60, None, "FREQ=WEEKLY", "2027-03-31"
            )
        for c in range(8):
            admin.add_coach(
                store, f"console:coach-{c}", [f"city-{n:02d}" for n in range(c * 10, c * 10 + 10)], NOW
            )
        admin.add_coach(store, "console:lead", [], NOW)


def timed(action: Callable[[], object], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def message(sender: str, words: str) -> InboundMessage:
    return InboundMessage(
        platform="console",
        message_id=uuid.uuid4().hex,
        conversation=sender,
        sender=sender,
        text=words,
        received_at=NOW,
    )


def core() -> list[Figure]:
    """The message path at the program's size (80 cities): medians of each kind of message."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends():
            name = label(backend)
            print(
                f"Core, {name}: {CITIES} cities, {CITIES * MEMBERS_PER_CITY} members, 9 coaches", flush=True
            )
            with fresh_database(backend, Path(folder), "core") as engine:
                seed(engine)
                dispatcher = Dispatcher(engine, FixedClock(NOW))
                members = [f"console:city-{n:02d}-{n % MEMBERS_PER_CITY}" for n in range(CITIES)]
                count = iter(range(10**6))

                def say(
                    words: str,
                    dispatcher: Dispatcher = dispatcher,
                    members: list[str] = members,
                    count: Iterator[int] = count,
                ) -> None:
                    dispatcher.handle(message(members[next(count) % CITIES], words))

                cases: list[tuple[str, Callable[[], object], int]] = [
                    ("update from a member", lambda: say("update: tested the intake form"), 400),
                    ("blocker from a member (3 outbox rows)", lambda: say("blocker: waiting on data"), 200),
                    ("schedule question", lambda: say("when is our next session?"), 200),
                ]
                for title, action, times in cases:
                    action()
                    spent = statistics.median(timed(action, times))
                    figures.append(figure(f"core {name}: {title}", spent, "ms"))
                latency = statistics.median(asyncio.run(reply_latency(engine, members)))
                figures.append(
                    figure(f"core {name}: acknowledged → reply handed to the platform", latency, "ms")
                )
    return figures


class Stopwatch:
    """An adapter that notes when a message last reached each recipient."""

    platform = "console"

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def send(self, recipient: str, reply: Reply, reference: object, context: object = None) -> None:
        self.arrived[recipient] = time.perf_counter()


async def reply_latency(engine: Engine, members: list[str], times: int = 100) -> list[float]:
    """An idle server: each message is stored (the acknowledgement), then handled and its reply sent
    by the workers and the delivery loop; the time from the acknowledgement to the send. Only the
    sender's reply is timed: on the real clock, coach notices the blockers above planned for NOW go
    out meanwhile once NOW has passed."""
    hub = Hub(engine, SystemClock())
    watch = Stopwatch()
    hub.register(watch)
    await hub.start()
    spent = []
    for n in range(times):
        text = f"update: latency probe {n}"
        msg = InboundMessage(
            platform="console",
            message_id=uuid.uuid4().hex,
            conversation=members[n % len(members)],
            sender=members[n % len(members)],
            text=text,
            received_at=datetime.now(UTC),
            reply_context={},
            direct=True,
        )
        await hub.accept(msg)
        acknowledged = time.perf_counter()
        while msg.sender not in watch.arrived:
            await asyncio.sleep(0.0005)
        spent.append((watch.arrived[msg.sender] - acknowledged) * 1000)
        watch.arrived.clear()
        await asyncio.sleep(0.02)  # idle between messages
    await hub.stop(5)
    return spent


LOOP = 10_000_000


def machine() -> list[Figure]:
    """How fast this machine runs plain Python at the time: the same work every run. Most figures here
    follow the machine (the same code did 2-3 times worse on one machine of this kind than on another),
    so tables from different machines or moments compare only beside it."""
    print("Machine: plain Python", flush=True)
    best = min(_loop(LOOP) for _ in range(3))
    return [figure(f"machine: {LOOP:,} additions in a Python loop, best of 3", best, "s", note="machine")]


def _loop(count: int) -> float:
    started = time.perf_counter()
    total = 0
    for n in range(count):
        total += n
    return time.perf_counter() - started


# Each returns its figures; they run in this order and make one table.
BENCHMARKS: list[Callable[[], list[Figure]]] = [
    machine,
    core,
    views.bench,
    scheduler.bench,
    delivery.bench,
    peer.bench,
    dashboard.bench,
    inbound.figures,
]


def main() -> None:
    started = datetime.now(UTC)
    if not os.environ.get("TEST_DATABASE_URL"):
        print("PostgreSQL: skipped (set TEST_DATABASE_URL to a server to include it)")
    figures: list[Figure] = []
    for benchmark in BENCHMARKS:
        try:
            figures += benchmark()
        except Exception as error:
            # One broken benchmark must not cost the others' figures: it shows as a missed row.
            traceback.print_exc()
            name = f"{benchmark.__module__}.{benchmark.__name__} failed: {type(error).__name__}"
            figures.append(figure(name, 1, "run", 0))
    print()
    print(f"{'figure':<64} {'value':>10} {'unit':<6} {'target/floor':<14} met")
    for row in figures:
        print(table_line(row))
    missed = [row for row in figures if row["met"] is False]
    print(f"\n{sum(1 for r in figures if r['met'])} targets met, {len(missed)} missed")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "backends": backends(),
                "figures": figures,
            },
            indent=2,
        )
    )
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
