"""Fixtures: a migrated database per test on SQLite and (where TEST_DATABASE_URL is set) PostgreSQL,
a fixed clock, and `testbot`, which makes a command test one line."""

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from bot import admin
from bot.core.clock import FixedClock
from bot.core.inbox import Dispatcher
from bot.core.messages import InboundMessage, Reply
from store import scratch, views
from store.db import make_engine, normalize_url, upgrade
from store.models import OutboxMessage
from store.repo import Store, open_store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday, in Learning Loop 2
PG_URL = os.environ.get("TEST_DATABASE_URL")


def pytest_report_header(config: pytest.Config) -> str:
    if PG_URL:
        return f"database backends: sqlite, postgresql ({make_url(normalize_url(PG_URL)).render_as_string()})"
    return "database backends: sqlite only (set TEST_DATABASE_URL to also run on PostgreSQL)"


NO_POSTGRES = "TEST_DATABASE_URL is not set"  # the reason every PostgreSQL run skips with
EXAMPLE_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """Without PostgreSQL, every database test skips its PostgreSQL run: one line says so and how to
    turn them on, instead of a `SKIPPED` line per test in the `-ra` summary, which other skips keep.
    Wrapping pytest's own summary, the runs are taken out of it and put back for the final count."""
    stats = terminalreporter.stats
    skipped = stats.get("skipped", [])
    others = [report for report in skipped if not _skip_reason(report).endswith(NO_POSTGRES)]
    postgres = len(skipped) - len(others)
    if postgres:
        stats["skipped"] = others
    try:
        return (yield)
    finally:
        if postgres:
            stats["skipped"] = skipped
            terminalreporter.write_line(
                f"{postgres} PostgreSQL runs skipped: set TEST_DATABASE_URL={EXAMPLE_PG_URL} to run them too"
            )


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""


def scratch_postgres_database() -> "contextlib.AbstractContextManager[str]":
    """A new, empty PostgreSQL database on the TEST_DATABASE_URL server, dropped afterwards."""
    assert PG_URL
    return scratch.scratch_postgres_database(PG_URL, "cda_test")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection to close folds the WAL into the file, so it copies whole
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    with scratch_postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(autouse=True)
def _no_program_from_another_database() -> None:
    """store/views keeps each loaded program calendar parsed by its row id, which names one calendar in
    a database but not across the databases of a test run: every test loading one has it as row 1."""
    views._programs.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "cda-bot.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def due_message(
    key: str, recipient: str, at: datetime, text: str = "hi", kind: str = "test"
) -> OutboxMessage:
    """An outbox row due at `at`, as the planner or a handler would write it."""
    return OutboxMessage(
        key=key,
        recipient=recipient,
        kind=kind,
        payload=Reply(text=text).model_dump(mode="json"),
        due_at=at,
        next_attempt_at=at,
        created_at=at,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@dataclass
class TestBot:
    """Talk to the bot in one line: `testbot.say("console:ana", "update: …")` returns the reply text."""

    engine: Engine
    clock: FixedClock
    __test__ = False

    def send(
        self, sender: str, text: str, *, message_id: str | None = None, conversation: str | None = None
    ) -> list[Reply]:
        message = said(sender, text, self.clock.now(), message_id=message_id, conversation=conversation)
        return Dispatcher(self.engine, self.clock).handle(message)

    def say(self, sender: str, text: str, **kwargs: str) -> str:
        return "\n".join(reply.text for reply in self.send(sender, text, **kwargs))

    def store(self) -> "contextlib.AbstractContextManager[Store]":
        return open_store(self.engine)


def said(
    sender: str,
    text: str,
    at: datetime = NOW,
    *,
    message_id: str | None = None,
    conversation: str | None = None,
) -> InboundMessage:
    """What `sender` says, with a new message id; without a conversation, to the bot one to one."""
    return InboundMessage(
        platform=sender.split(":", 1)[0],
        message_id=message_id or uuid.uuid4().hex,
        conversation=conversation or sender,
        sender=sender,
        text=text,
        received_at=at,
        direct=conversation is None,
    )


@pytest.fixture
def testbot(engine: Engine, clock: FixedClock) -> TestBot:
    return TestBot(engine, clock)


@pytest.fixture
def world(testbot: TestBot) -> TestBot:
    """Three cities with their people and one update and blocker each, marked with the city's name."""
    populate_world(testbot)
    return testbot


def populate_world(bot: TestBot, also: Callable[[Store, datetime], None] | None = None) -> None:
    """The `world`: alpha (bound to slack:T0001:C0001), beta and gamma, their members, coaches of one,
    two and all cities, an admin, a weekly session each, and one update and blocker per city.
    `also` adds to the roster in the same transaction."""
    with bot.store() as store:
        now = bot.clock.now()
        admin.add_city(store, "alpha", "Alpha", "America/Chicago", now, "US", "implementation", "en")
        admin.add_city(store, "beta", "Beta", "Europe/London", now, "GB", "implementation", "en")
        admin.add_city(store, "gamma", "Gamma", "America/Bogota", now, "CO", "capacity", "es")
        admin.add_member(store, "console:a1", "alpha", now, "Ann Alpha")
        admin.add_member(store, "console:b1", "beta", now, "Bob Beta")
        admin.add_member(store, "console:g1", "gamma", now, "Gil Gamma")
        admin.add_coach(store, "console:coach-a", ["alpha"], now, "Coach A")
        admin.add_coach(store, "console:coach-ab", ["alpha", "beta"], now, "Coach AB")
        admin.add_coach(store, "console:coach-all", [], now, "Coach All")
        admin.add_admin(store, "console:admin", now, "Admin")
        admin.bind(store, "slack:T0001:C0001", "alpha", now)
        for slug, start in (
            ("alpha", "2026-12-01T10:00"),
            ("beta", "2026-12-02T15:00"),
            ("gamma", "2026-12-03T09:00"),
        ):
            admin.add_session(
                store, slug, start, now, 60, f"{slug.upper()} session", "FREQ=WEEKLY", "2027-03-31"
            )
        if also is not None:
            also(store, now)
    for member, city in (("console:a1", "ALPHA"), ("console:b1", "BETA"), ("console:g1", "GAMMA")):
        bot.say(member, f"update: {city}-UPDATE-TEXT")
        bot.say(member, f"blocker: {city}-BLOCKER-TEXT")


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Until `condition` holds, for a test running in the event loop (what it waits for happens there)."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.001)
