"""What the benchmark modules share: the databases to run on, timing, and the rows of the table."""

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.fixtures import NOW, Program, build, built
from bot.core.messages import InboundMessage
from store.db import make_engine, normalize_url, upgrade

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench"  # git-ignored: generated programs kept between runs
BENCH_DATABASE = "bench"  # on the TEST_DATABASE_URL server, kept between runs

Figure = dict[str, Any]


def figure(
    name: str, value: float, unit: str, target: float | None = None, *, floor: bool = False, note: str = ""
) -> Figure:
    """One row of the table. A target is a ceiling (a time) unless `floor` (a rate to reach)."""
    met = None if target is None else (value >= target if floor else value <= target)
    row = {"figure": name, "value": round(value, 3), "unit": unit, "target": target, "floor": floor}
    row["met"] = met
    if note:
        row["note"] = note
    print(f"  {name:<58} {value:>10.2f} {unit:<6} {_bound(row):<12} {_met(met)}", flush=True)
    return row


def _bound(row: Figure) -> str:
    if row["target"] is None:
        return ""
    return f"{'≥' if row['floor'] else '<'} {row['target']:g} {row['unit']}"


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def table_line(row: Figure) -> str:
    return f"{row['figure']:<64} {row['value']:>10.2f} {row['unit']:<6} {_bound(row):<14} {_met(row['met'])}"


def backends() -> list[str]:
    """SQLite always; PostgreSQL where TEST_DATABASE_URL names a server."""
    return ["sqlite", "postgresql"] if os.environ.get("TEST_DATABASE_URL") else ["sqlite"]


def label(backend: str) -> str:
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]


def server_url() -> str:
    server = os.environ.get("TEST_DATABASE_URL")
    assert server, "PostgreSQL runs need TEST_DATABASE_URL"
    return normalize_url(server)


def _postgres_database(name: str) -> str:
    """The URL of database `name` on the TEST_DATABASE_URL server, created if absent."""
    server = make_url(server_url())
    maintenance = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with maintenance.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        maintenance.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def cached_program(backend: str, program: Program) -> Engine:
    """An engine on a database holding `program`: built once, then kept (a file under bench/ for
    SQLite, the `bench` database on the PostgreSQL server) and only migrated on later runs."""
    if backend == "sqlite":
        CACHE.mkdir(exist_ok=True)
        path = CACHE / f"views-{program.name}.db"
        for stale in CACHE.glob("views-*.db*"):
            if not stale.name.startswith(path.name):
                stale.unlink()
        engine = make_engine(f"sqlite:///{path}")
    else:
        engine = make_engine(_postgres_database(BENCH_DATABASE))
    if built(engine, program):
        upgrade(engine)  # a migration added since the program was built
        return engine
    print(f"  building {program.name} on {label(backend)} (kept for later runs) …", flush=True)
    started = time.perf_counter()
    _empty(engine)
    build(engine, program)
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    return engine


def _empty(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        return
    engine.dispose()
    path = Path(str(engine.url.database))
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()


@contextmanager
def fresh_database(backend: str, folder: Path, name: str) -> Iterator[Engine]:
    """An empty, migrated database for one benchmark, dropped afterwards."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{folder / (name + '.db')}")
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    from store.scratch import scratch_postgres_database

    with scratch_postgres_database(server_url(), f"cda_bench_{name}") as url:
        engine = make_engine(url)
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def message(sender: str, words: str, conversation: str | None = None) -> InboundMessage:
    return InboundMessage(
        platform=sender.split(":", 1)[0],
        message_id=uuid.uuid4().hex,
        conversation=conversation or sender,
        sender=sender,
        text=words,
        received_at=NOW,
        direct=conversation is None,
    )


def median_ms(action: Callable[[], object], times: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        action()
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent)
