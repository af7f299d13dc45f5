"""Dates: a city's coaching sessions, their iCalendar import and export, and the program calendar."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
from bot.cli.common import Db, admin_write, engine_for, fail, out
from bot.core.clock import SystemClock
from store.repo import Store, open_store

session_app = typer.Typer(help="Coaching sessions of a city.", no_args_is_help=True)
calendar_app = typer.Typer(help="Import and export a city's sessions as iCalendar.", no_args_is_help=True)
program_app = typer.Typer(help="The program calendar (phases and key events).", no_args_is_help=True)


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
