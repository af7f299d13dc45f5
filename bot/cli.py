"""`cda-bot`: the terminal channel, administration, and (later) the server and scheduler."""

import asyncio
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from adapters.console.adapter import ConsoleAdapter, inbound
from adapters.text import render_text
from bot import admin
from bot.admin import AdminError
from bot.clock import Clock, FixedClock, SystemClock, parse_instant
from bot.delivery import Deliverer
from bot.demo import DEMO_USER, seed
from bot.dispatcher import Dispatcher
from bot.identity import IdentityError, normalize_identity
from bot.settings import Settings
from store.db import make_engine, upgrade
from store.repo import Store, open_store

app = typer.Typer(
    help="cda-bot: the City Data Alliance chat-ops bot.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
city_app = typer.Typer(help="Cities in the program.", no_args_is_help=True)
member_app = typer.Typer(help="City team members.", no_args_is_help=True)
coach_app = typer.Typer(help="Coaches and the cities they coach.", no_args_is_help=True)
admin_app = typer.Typer(help="Admins of the bot.", no_args_is_help=True)
session_app = typer.Typer(help="Coaching sessions of a city.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
for sub, name in [
    (city_app, "city"),
    (member_app, "member"),
    (coach_app, "coach"),
    (admin_app, "admin"),
    (session_app, "session"),
    (db_app, "db"),
]:
    app.add_typer(sub, name=name)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Db = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: DATABASE_URL, else ./cda-bot.db)")
]
Now = Annotated[
    str | None, typer.Option("--now", help="The bot's clock for this call (ISO-8601; UTC if no offset)")
]


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(1)


def engine_for(db: str | None) -> Engine:
    engine = make_engine(db or Settings().database_url)
    upgrade(engine)
    return engine


def clock_for(now: str | None) -> Clock:
    if now is None:
        return SystemClock()
    try:
        return FixedClock(parse_instant(now))
    except ValueError:
        raise fail(f"bad --now '{now}': use ISO-8601 like 2026-11-28T12:00:00Z") from None


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


# -- talking to the bot -------------------------------------------------------------------------------
def converse(engine: Engine, clock: Clock, identity: str, text: str) -> list[str]:
    """One message in; the replies, then whatever unprompted messages became due for console users."""
    replies = Dispatcher(engine, clock).handle(inbound(identity, text, clock.now()))
    printed = [render_text(reply) for reply in replies]
    deliverer = Deliverer(engine, {"console": ConsoleAdapter(printed.append)}, clock)
    asyncio.run(deliverer.deliver_due())
    return printed


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="The message, as it would be typed in the channel")],
    as_: Annotated[str, typer.Option("--as", help="Who speaks, e.g. console:ana or slack:T0001:U0001")],
    now: Now = None,
    db: Db = None,
) -> None:
    """Send one message to the bot and print its reply."""
    identity, clock = speaker(as_), clock_for(now)
    for line in converse(engine_for(db), clock, identity, text):
        print(line)


def chat_loop(engine: Engine, identity: str) -> None:
    clock = SystemClock()
    while True:
        try:
            text = out.input(f"[bold cyan]{identity}[/]> ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if text.strip() in ("/quit", "/exit"):
            return
        if text.strip().startswith("/as "):
            try:
                identity = normalize_identity(text.strip()[4:])
            except IdentityError as error:
                out.print(f"[red]{escape(str(error))}[/]")
            continue
        for line in converse(engine, clock, identity, text):
            out.print(f"[green]bot[/] {escape(line)}")


@app.command()
def chat(
    as_: Annotated[str, typer.Option("--as", help="Who speaks, e.g. console:ana")],
    db: Db = None,
) -> None:
    """Chat with the bot in the terminal as IDENTITY."""
    identity = speaker(as_)
    engine = engine_for(db)
    out.print(
        f"Chatting as [bold]{identity}[/]. `/cda help` for commands, `/as IDENTITY` to switch, "
        "Ctrl-D to leave."
    )
    chat_loop(engine, identity)


@app.command()
def demo(
    db: Db = None, as_: Annotated[str, typer.Option("--as", help="Who you are in the chat")] = DEMO_USER
) -> None:
    """Create and seed a local database, then open a chat with the bot."""
    identity = speaker(as_)
    engine = engine_for(db)
    with open_store(engine) as store:
        created = seed(store, SystemClock().now())
    out.rule("[bold]cda-bot demo[/]")
    out.print("Seeded three sample cities." if created else "Using the demo data already in the database.")
    out.print(
        f"You are [bold]{identity}[/], a member of [bold]Riverton[/] (America/Chicago).\n"
        "Try:  [cyan]update: tested the new intake form with 5 residents[/]\n"
        "      [cyan]blocker: still waiting on the 311 data export[/]\n"
        "      [cyan]/cda status[/]   [cyan]/cda next[/]   [cyan]/cda blockers[/]   [cyan]/cda help[/]\n"
        "Switch to the coach of all three cities with [cyan]/as console:coach[/] "
        "(other members: console:camila, console:joao). Ctrl-D or /quit to leave."
    )
    chat_loop(engine, identity)


# -- the server --------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8000,
    db: Db = None,
) -> None:
    """The HTTP server with every adapter whose credentials are set."""
    from bot import serve as serving  # the server's dependencies load only for this command

    settings = Settings()
    try:
        server = serving.build_server(settings, engine_for(db or settings.database_url), SystemClock())
    except serving.ConfigError as error:
        raise fail(str(error)) from None
    serving.run(server, host, port, serving.secrets_of(settings), lambda line: err.print(line, markup=False))


# -- administration -----------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(db: Db = None) -> None:
    """Apply the database migrations."""
    engine_for(db)
    out.print("database is up to date")


@city_app.command("add")
def city_add(
    slug: str,
    name: Annotated[str, typer.Option("--name")],
    tz: Annotated[str, typer.Option("--tz", help="IANA zone, e.g. America/Bogota")],
    country: Annotated[str | None, typer.Option("--country")] = None,
    pathway: Annotated[str | None, typer.Option("--pathway", help="implementation or capacity")] = None,
    lang: Annotated[str, typer.Option("--lang", help="en, es or pt")] = "en",
    db: Db = None,
) -> None:
    """Add a city."""

    def action(store: Store) -> str:
        city = admin.add_city(store, slug, name, tz, SystemClock().now(), country, pathway, lang)
        return f"added city {city.slug} ({city.name}, {city.zone})"

    admin_write(db, action)


@city_app.command("list")
def city_list(db: Db = None) -> None:
    """List the cities with their people and bindings."""
    engine = engine_for(db)
    table = Table("slug", "name", "zone", "lang", "pathway", "members", "coaches")
    table.add_column("bound conversations", overflow="fold")
    with open_store(engine) as store:
        for city in store.cities():
            assert city.id is not None
            table.add_row(
                city.slug,
                city.name,
                city.zone,
                city.language,
                city.pathway or "—",
                str(len(store.members_of(city.id))),
                str(len(store.coaches_of(city.id))),
                "\n".join(store.bindings_of(city.id)) or "—",
            )
    out.print(table)


@member_app.command("add")
def member_add(
    identity: str,
    city: Annotated[str, typer.Option("--city")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    db: Db = None,
) -> None:
    """Add a member of a city's team."""

    def action(store: Store) -> str:
        person = admin.add_member(store, identity, city, SystemClock().now(), name)
        return f"added member {person.identity} to {city}"

    admin_write(db, action)


@coach_app.command("add")
def coach_add(
    identity: str,
    city: Annotated[
        list[str] | None, typer.Option("--city", help="Repeat for several; none = all cities")
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    db: Db = None,
) -> None:
    """Add a coach of the listed cities (of all cities when none is listed)."""

    def action(store: Store) -> str:
        person, cities = admin.add_coach(store, identity, city or [], SystemClock().now(), name)
        scope = ", ".join(c.slug for c in cities) if cities else "all cities"
        return f"{person.identity} coaches {scope}"

    admin_write(db, action)


@admin_app.command("add")
def admin_add(
    identity: str,
    name: Annotated[str | None, typer.Option("--name")] = None,
    db: Db = None,
) -> None:
    """Add an admin (sees every city, like a coach of all)."""

    def action(store: Store) -> str:
        return f"added admin {admin.add_admin(store, identity, SystemClock().now(), name).identity}"

    admin_write(db, action)


@app.command("bind")
def bind_cmd(
    conversation: Annotated[str, typer.Argument(help="e.g. slack:T0001:C0001")],
    city: Annotated[str, typer.Option("--city")],
    db: Db = None,
) -> None:
    """Bind a chat conversation to a city: whoever speaks there counts as its member."""

    def action(store: Store) -> str:
        binding, before = admin.bind(store, conversation, city, SystemClock().now())
        moved = f" (was {before.slug})" if before and before.slug != city else ""
        return f"bound {binding.conversation} to {city}{moved}"

    admin_write(db, action)


@session_app.command("add")
def session_add(
    city: Annotated[str, typer.Option("--city")],
    start: Annotated[
        str, typer.Option("--start", help="Local time in the city's zone, e.g. 2026-12-01T10:00")
    ],
    duration: Annotated[int, typer.Option("--duration", help="Minutes")] = 60,
    title: Annotated[str | None, typer.Option("--title")] = None,
    rrule: Annotated[str | None, typer.Option("--rrule", help="e.g. FREQ=WEEKLY;BYDAY=TU")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day of a recurring session")] = None,
    db: Db = None,
) -> None:
    """Add a one-off or recurring coaching session."""

    def action(store: Store) -> str:
        session = admin.add_session(store, city, start, SystemClock().now(), duration, title, rrule, until)
        repeat = f", repeating {session.rrule}" if session.rrule else ""
        return f"added session #{session.id} for {city}: {session.start_local:%Y-%m-%d %H:%M} local{repeat}"

    admin_write(db, action)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
