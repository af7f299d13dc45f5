"""`cda-bot`: the terminal channel, administration, and (later) the server and scheduler."""

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from adapters.console.adapter import ConsoleAdapter, inbound
from adapters.text import render_text
from bot import admin
from bot.admin import AdminError
from bot.calendar.ics import IcsError, export_calendar, import_calendar
from bot.calendar.program import (
    Event,
    ProgramFileError,
    load_program_file,
    local,
    parse_program,
    program_from,
)
from bot.calendar.sessions import upcoming
from bot.cli.demo import DEMO_USER, seed
from bot.core.clock import Clock, FixedClock, SystemClock, parse_instant
from bot.core.dispatcher import Dispatcher
from bot.core.identity import IdentityError, normalize_identity
from bot.core.messages import Adapter
from bot.runtime.delivery import Deliverer
from bot.runtime.settings import Settings
from scheduler.runner import PassRunner
from store.db import make_engine, upgrade
from store.models import Role
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
calendar_app = typer.Typer(help="Import and export a city's sessions as iCalendar.", no_args_is_help=True)
program_app = typer.Typer(help="The program calendar (phases and key events).", no_args_is_help=True)
reminders_app = typer.Typer(help="What the scheduler planned, sent, dropped or failed.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
for sub, name in [
    (city_app, "city"),
    (member_app, "member"),
    (coach_app, "coach"),
    (admin_app, "admin"),
    (session_app, "session"),
    (calendar_app, "calendar"),
    (program_app, "program"),
    (reminders_app, "reminders"),
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
        "      [cyan]what's on this week?[/]   [cyan]when is the Baltimore convening?[/]\n"
        "Switch to the coach of all three cities with [cyan]/as console:coach[/] "
        "(other members, who hear Spanish and Portuguese: console:camila, console:joao).\n"
        "Ctrl-D or /quit to leave."
    )
    chat_loop(engine, identity)


# -- the server --------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8000,
    scheduler: Annotated[
        bool, typer.Option("--scheduler/--no-scheduler", help="Run reminders, nudges and digests here")
    ] = True,
    db: Db = None,
) -> None:
    """The HTTP server with every adapter whose credentials are set, and the scheduler."""
    from bot.runtime import serve as serving  # the server's dependencies load only for this command

    settings = Settings()
    try:
        server = serving.build_server(
            settings, engine_for(db or settings.database_url), SystemClock(), scheduler
        )
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
    tz: Annotated[str | None, typer.Option("--tz", help="The coach's zone, for the Monday digest")] = None,
    db: Db = None,
) -> None:
    """Add a coach of the listed cities (of all cities when none is listed)."""

    def action(store: Store) -> str:
        person, cities = admin.add_coach(store, identity, city or [], SystemClock().now(), name, tz)
        scope = ", ".join(c.slug for c in cities) if cities else "all cities"
        return f"{person.identity} coaches {scope}"

    admin_write(db, action)


@member_app.command("remove")
def member_remove(identity: str, db: Db = None) -> None:
    """Take a member off the roster (their updates and blockers stay)."""
    admin_write(db, lambda store: admin.remove_person(store, identity, Role.member))


@coach_app.command("remove")
def coach_remove(
    identity: str,
    city: Annotated[
        list[str] | None, typer.Option("--city", help="Only these cities; none: the coach")
    ] = None,
    db: Db = None,
) -> None:
    """Take a coach off some cities, or off the roster."""
    admin_write(db, lambda store: admin.remove_person(store, identity, Role.coach, city))


@app.command("unbind")
def unbind_cmd(conversation: str, db: Db = None) -> None:
    """Unbind a conversation from its city."""
    admin_write(db, lambda store: f"unbound {conversation} from {admin.unbind(store, conversation).slug}")


@session_app.command("remove")
def session_remove(
    session_id: Annotated[int, typer.Argument(help="The # shown by `session list`")],
    city: Annotated[str, typer.Option("--city")],
    db: Db = None,
) -> None:
    """Remove a session (a whole series); `session skip` cancels a single day instead."""
    admin_write(
        db, lambda store: f"removed session #{admin.remove_session(store, city, session_id).id} of {city}"
    )


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


@session_app.command("list")
def session_list(city: Annotated[str, typer.Option("--city")], db: Db = None) -> None:
    """List a city's sessions and the next few dates."""
    engine = engine_for(db)
    clock = SystemClock()
    with open_store(engine) as store:
        try:
            found = admin.city_of(store, city)
        except AdminError as error:
            raise fail(str(error)) from None
        table = Table("id", "title", f"start ({found.zone})", "min", "repeats", "until", "skipped", "uid")
        for s in store.sessions_of(found.id):  # type: ignore[arg-type]
            table.add_row(
                str(s.id),
                s.title,
                f"{s.start_local:%Y-%m-%d %H:%M}",
                str(s.duration_min),
                s.rrule or "—",
                f"{s.until_local:%Y-%m-%d}" if s.until_local else "—",
                "\n".join(d[:10] for d in s.exdates) or "—",
                s.uid or "—",
            )
        coming = upcoming(store.sessions_of(found.id), found.zone, clock.now(), count=3)  # type: ignore[arg-type]
    out.print(table)
    for occurrence in coming:
        out.print(f"next: {occurrence.title} {occurrence.local_start(found.zone):%a %Y-%m-%d %H:%M %Z}")


@session_app.command("skip")
def session_skip(
    city: Annotated[str, typer.Option("--city")],
    date_: Annotated[str, typer.Option("--date", help="Local day to cancel, YYYY-MM-DD")],
    db: Db = None,
) -> None:
    """Cancel a city's sessions on one day (a holiday); the rest of a series stays."""

    def action(store: Store) -> str:
        cancelled = admin.skip_day(store, city, date_, SystemClock().now())
        return "cancelled: " + "; ".join(cancelled)

    admin_write(db, action)


@calendar_app.command("import")
def calendar_import(
    file: Annotated[Path, typer.Argument(help="An .ics file")],
    city: Annotated[str, typer.Option("--city")],
    db: Db = None,
) -> None:
    """Import sessions from an iCalendar file; importing it again updates them by UID."""
    try:
        data = file.read_bytes()
    except OSError as error:
        raise fail(f"cannot read {file}: {error.strerror}") from None

    def action(store: Store) -> str:
        found = admin.city_of(store, city)
        try:
            report = import_calendar(store, found, data, SystemClock().now())
        except IcsError as error:
            raise AdminError(f"{file}: {error}") from None
        return (
            f"imported {file.name} into {found.slug}: {report.created} new, {report.updated} updated, "
            f"{report.removed} removed, {report.skipped} skipped"
        )

    admin_write(db, action)


@calendar_app.command("export")
def calendar_export(city: Annotated[str, typer.Option("--city")], db: Db = None) -> None:
    """Write a city's sessions as iCalendar to stdout."""
    engine = engine_for(db)
    with open_store(engine) as store:
        try:
            found = admin.city_of(store, city)
        except AdminError as error:
            raise fail(str(error)) from None
        data = export_calendar(found, store.sessions_of(found.id), SystemClock().now())  # type: ignore[arg-type]
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@program_app.command("load")
def program_load(
    file: Annotated[Path, typer.Argument(help="A program calendar (YAML)")], db: Db = None
) -> None:
    """Replace the program calendar; a file with an error is refused and the old calendar stays."""
    try:
        document = load_program_file(file)
    except ProgramFileError as error:
        raise fail(str(error)) from None
    program = parse_program(document)

    def action(store: Store) -> str:
        store.save_program(program.cohort, document, SystemClock().now())
        counts = f"{len(program.phases)} phases, {len(program.events)} events"
        return f"loaded program calendar {program.cohort}: {counts}"

    admin_write(db, action)


@program_app.command("show")
def program_show(db: Db = None) -> None:
    """Show the program calendar in force."""
    engine = engine_for(db)
    with open_store(engine) as store:
        program = program_from(store.program_document())
    table = Table("key", "phase", "pathway", "from", "to")
    for phase in program.phases:
        table.add_row(
            phase.key, local(phase.name, "en"), phase.pathway or "all", str(phase.start), str(phase.end)
        )
    out.print(f"cohort {program.cohort}")
    out.print(table)
    events = Table("key", "event", "when")
    for event in program.events:
        events.add_row(event.key, local(event.name, "en"), event_when(event))
    out.print(events)


def event_when(event: Event) -> str:
    if event.date:
        return str(event.date)
    if event.week_of:
        return f"week of {event.week_of}"
    if event.start:
        return f"{event.start} to {event.end}"
    if event.month:
        return f"{event.month} (day not fixed)"
    if event.phase:
        return f"during {event.phase} (day not fixed)"
    return "set per city"


@app.command()
def tick(now: Now = None, db: Db = None) -> None:
    """Run one scheduler pass: plan what is due, send it (console deliveries print)."""
    from bot.runtime import serve as serving

    clock = clock_for(now)
    settings = Settings()
    engine = engine_for(db or settings.database_url)
    try:
        server = serving.build_server(settings, engine, clock, scheduler=False)
    except serving.ConfigError as error:
        raise fail(str(error)) from None
    adapters: dict[str, Adapter] = {"console": ConsoleAdapter(print)}
    adapters.update({adapter.platform: adapter for adapter in server.adapters})
    report = asyncio.run(PassRunner(engine, Deliverer(engine, adapters, clock), clock).run())
    delivery = report.delivery
    out.print(
        f"planned {len(report.plan.planned)}, sent {len(delivery.sent)}, retrying {len(delivery.retrying)}, "
        f"failed {len(delivery.failed)}, dropped {len(report.plan.dropped) + len(delivery.dropped)}"
        f" (adapters here: {', '.join(adapters)})"
    )


@reminders_app.command("list")
def reminders_list(
    city: Annotated[str | None, typer.Option("--city")] = None,
    db: Db = None,
) -> None:
    """Show outbox messages: reminders, nudges, digests and notices, planned, sent, dropped or failed."""
    engine = engine_for(db)
    table = Table("id", "due", "kind", "to", "status", "tries", "note")
    with open_store(engine) as store:
        cities = {c.id: c for c in store.cities()}
        ids = None
        if city is not None:
            try:
                ids = [admin.city_of(store, city).id]
            except AdminError as error:
                raise fail(str(error)) from None
        for row in store.outbox(ids):  # type: ignore[arg-type]
            where = cities.get(row.city_id)
            due = row.due_at.astimezone(ZoneInfo(where.zone)) if where else row.due_at
            table.add_row(
                str(row.id),
                f"{due:%Y-%m-%d %H:%M %Z}",
                row.kind,
                row.recipient,
                row.status,
                str(row.attempts),
                (row.last_error or "")[:60],
            )
    out.print(table)


@city_app.command("set")
def city_set(
    slug: str,
    reminders: Annotated[
        str | None, typer.Option("--reminders", help="Before each session, e.g. 24h,1h (none: off)")
    ] = None,
    nudge_after: Annotated[
        int | None, typer.Option("--nudge-after", help="Days without update (0: off)")
    ] = None,
    nudge_hour: Annotated[int | None, typer.Option("--nudge-hour", help="Local hour for nudges")] = None,
    working_days: Annotated[
        str | None, typer.Option("--working-days", help="e.g. mon-fri or mon,tue,thu")
    ] = None,
    quiet: Annotated[str | None, typer.Option("--quiet", help="Quiet hours, e.g. 20-8")] = None,
    stale_after: Annotated[
        int | None, typer.Option("--stale-after", help="Days before coaches hear of an open blocker (0: off)")
    ] = None,
    db: Db = None,
) -> None:
    """Change what the scheduler sends a city."""

    def action(store: Store) -> str:
        found = admin.set_city_schedule(
            store, slug, reminders, nudge_after, nudge_hour, working_days, quiet, stale_after
        )
        return (
            f"{found.slug}: reminders {admin.describe_offsets(found.reminder_offsets)}, "
            f"nudge after {found.nudge_after_days} days at {found.nudge_hour}:00, working days "
            f"{admin.describe_days(found.working_days)}, quiet {found.quiet_start}:00–{found.quiet_end}:00, "
            f"blockers flagged after {found.stale_blocker_days} days"
        )

    admin_write(db, action)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
