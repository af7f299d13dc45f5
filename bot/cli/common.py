"""What every `cda-bot` command shares: the consoles, the --db and --now options, error exits, and dates
written as the bot writes them."""

import ast
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from bot.admin import AdminError
from bot.calendar.sessions import FIRST_YEAR, LAST_YEAR, in_years
from bot.core.clock import Clock, FixedClock, SystemClock, parse_instant
from bot.core.i18n import translator
from bot.core.identity import IdentityError, normalize_identity
from bot.runtime.settings import Settings
from store.db import MIGRATIONS, make_engine, reader, upgrade
from store.repo import Store, open_store

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Db = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: DATABASE_URL, else ./cda-bot.db)")
]
Now = Annotated[
    str | None, typer.Option("--now", help="The bot's clock for this call (ISO-8601; UTC if no offset)")
]


def fail(message: str) -> typer.Exit:
    """Print the error; callers `raise fail(...)` so the exit stays visible where it happens."""
    err.print(f"error: {message}", markup=False)
    return typer.Exit(1)


def warn(message: str) -> None:
    """A setting taken that does not do all an admin may think: said on stderr, the exit stays 0."""
    err.print(f"warning: {message}", markup=False)


# The `--db` given before the command (`cda-bot --db URL city list`); the root callback sets it on
# every run, so one run never sees another's.
root_db: ContextVar[str | None] = ContextVar("root_db", default=None)


def database_url(db: str | None) -> str:
    """A command's own `--db`, else the one given before it, else DATABASE_URL or ./cda-bot.db."""
    return db or root_db.get() or Settings().database_url


def engine_for(db: str | None) -> Engine:
    """The database, migrated; a URL that names none, or a database that does not answer, is one line
    and exit 1, as any bad argument is (its password never printed)."""
    url = database_url(db)
    try:
        engine = make_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise fail(f"not a database URL cda-bot can use: {_shown(url)} ({error})") from None
    try:
        # Alembic loads only when there is something to migrate: `serve` would keep it (9 MB) for nothing.
        if not at_head(engine):
            upgrade(engine)
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
        raise fail(f"the database at {_shown(url)} cannot be reached: {reason}") from None
    return engine


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unreadable)"  # it could hold a password anywhere


def migration_head() -> str | None:
    """The one revision no migration revises (what `upgrade` leads to), read from the migration files
    without importing Alembic; None when that is not plain (several heads, a revision not named)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        values = {
            target.id: ast.literal_eval(node.value)
            for node in ast.parse(path.read_bytes()).body
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision")
        }
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        revised.update([down] if isinstance(down, str) else [str(d) for d in down or ()])
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """The database is at the migrations' head already; False when unsure (Alembic then decides). A
    database that does not answer raises here as it would in Alembic."""
    try:
        head = migration_head()
    except (OSError, SyntaxError, ValueError):
        return False
    if head is None:
        return False
    with reader(engine).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return current == [head]


def clock_for(now: str | None) -> Clock:
    if now is None:
        return SystemClock()
    try:
        instant: datetime | None = parse_instant(now)
    except ValueError:
        raise fail(f"bad --now '{now}': use ISO-8601 like 2026-11-28T12:00:00Z") from None
    except OverflowError:  # an offset that takes it before datetime's first year, in UTC
        instant = None
    # The years sessions and the program keep to: the bot works out days and weeks around `now`, which
    # at datetime's ends raised OverflowError.
    if instant is None or not in_years(instant.year):
        raise fail(f"bad --now '{now}': give an instant from {FIRST_YEAR} to {LAST_YEAR}")
    return FixedClock(instant)


def speaker(identity: str) -> str:
    try:
        return normalize_identity(identity)
    except IdentityError as error:
        raise fail(str(error)) from None


def admin_write(db: str | None, action: Callable[[Store], str]) -> None:
    """Run one admin change in one transaction; a refusal rolls it back and exits 1."""
    engine = engine_for(db)
    try:
        with open_store(engine) as store:
            message = action(store)
    except AdminError as error:
        raise fail(str(error)) from None
    out.print(message, markup=False)


def counted(count: int, one: str, many: str | None = None) -> str:
    """`1 phase`, `2 phases`, `3 cities`: a count and its noun, for what a command prints."""
    return f"{count} {one if count == 1 else many or one + 's'}"


EN = translator("en")  # the CLI speaks to admins, in English, with the bot's dates


def local_when(local: datetime, zone: str) -> str:
    """A wall-clock time in a city's zone, as the bot writes it: `Tue 1 Dec 2026, 10:00 CST`."""
    aware = local.replace(tzinfo=ZoneInfo(zone))
    return f"{EN.date(aware.date())}, {EN.time(aware)}"


def instant_when(instant: datetime, zone: str = "UTC") -> str:
    """An instant shown in `zone`: `Thu 4 Feb 2027, 09:00 MST`."""
    return EN.instant(instant, zone)
