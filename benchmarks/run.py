"""`make bench`: how the core holds up at the program's size (80 cities), printed as figures.

Runs on SQLite, and on PostgreSQL too where TEST_DATABASE_URL names a server (a scratch database is
created and dropped). Nothing here passes or fails; compare the figures between changes.
"""

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from bot import admin
from bot.core.clock import FixedClock, SystemClock
from bot.core.inbox import Dispatcher
from bot.core.messages import InboundMessage, Reply
from bot.runtime.hub import Hub
from scheduler.planner import plan
from store.db import make_engine, upgrade
from store.repo import open_store
from store.scratch import scratch_postgres_database

CITIES = 80
MEMBERS_PER_CITY = 3
NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # a Monday afternoon: reminders and digests are due
ZONES = ["America/Chicago", "America/Bogota", "America/Sao_Paulo", "Europe/London", "America/Santiago"]


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


def report(name: str, spent: list[float]) -> None:
    spent = sorted(spent)
    p95 = spent[int(len(spent) * 0.95) - 1] if len(spent) > 1 else spent[0]
    print(
        f"  {name:<42} n={len(spent):>4}  median {statistics.median(spent):7.2f} ms  p95 {p95:7.2f} ms"
        f"  ({1000 / statistics.mean(spent):7.1f}/s)"
    )


def bench(label: str, url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    seed(engine)
    clock = FixedClock(NOW)
    dispatcher = Dispatcher(engine, clock)
    print(f"{label}: {CITIES} cities, {CITIES * MEMBERS_PER_CITY} members, 9 coaches")
    members = [f"console:city-{n:02d}-{n % MEMBERS_PER_CITY}" for n in range(CITIES)]
    count = iter(range(10**6))
    report(
        "update from a member",
        timed(
            lambda: dispatcher.handle(
                message(members[next(count) % CITIES], "update: tested the intake form")
            ),
            400,
        ),
    )
    report(
        "blocker from a member (3 outbox rows)",
        timed(
            lambda: dispatcher.handle(message(members[next(count) % CITIES], "blocker: waiting on data")), 200
        ),
    )
    report(
        "schedule question",
        timed(
            lambda: dispatcher.handle(message(members[next(count) % CITIES], "when is our next session?")),
            200,
        ),
    )
    report(
        "/cda status, coach of 10 cities",
        timed(lambda: dispatcher.handle(message("console:coach-3", "/cda status")), 50),
    )
    report(
        "/cda status, coach of all 80 cities",
        timed(lambda: dispatcher.handle(message("console:lead", "/cda status")), 10),
    )

    def one_pass() -> None:
        with open_store(engine) as store:
            plan(store, clock.now())

    report("scheduler pass, first (plans reminders)", timed(one_pass, 1))
    report("scheduler pass, nothing new", timed(one_pass, 20))
    report("acknowledged → reply handed to the platform", asyncio.run(reply_latency(engine, members)))
    engine.dispose()


class Stopwatch:
    """An adapter that notes when each reply reaches it."""

    platform = "console"

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def send(self, recipient: str, reply: Reply, reference: object, context: object = None) -> None:
        self.arrived[reply.text] = time.perf_counter()


async def reply_latency(engine: Engine, members: list[str], times: int = 100) -> list[float]:
    """An idle server: each message is stored (the acknowledgement), then handled and its reply sent
    by the workers and the delivery loop; the time from the acknowledgement to the send."""
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
        while not watch.arrived:
            await asyncio.sleep(0.0005)
        spent.append((max(watch.arrived.values()) - acknowledged) * 1000)
        watch.arrived.clear()
        await asyncio.sleep(0.02)  # idle between messages
    await hub.stop(5)
    return spent


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite", f"sqlite:///{Path(folder) / 'bench.db'}")
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        with scratch_postgres_database(server, "cda_bench") as url:
            bench("PostgreSQL", url)
    else:
        print("PostgreSQL: skipped (set TEST_DATABASE_URL to a server to include it)")


if __name__ == "__main__":
    main()
