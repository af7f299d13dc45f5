"""Dates: a city's coaching sessions, their iCalendar import and export, and the program calendar."""

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from bot import admin
from bot.admin import AdminError
from bot.calendar.program import (
    Event,
    ProgramFileError,
    load_program_file,
    local,
    parse_program,
    program_from,
)
from bot.calendar.sessions import upcoming
from bot.cli.common import EN, Db, admin_write, counted, engine_for, fail, instant_when, local_when, out
from bot.cli.listing import AsJson, Shown, Value, print_rows, tsv_line
from bot.core.clock import SystemClock
from store.models import CoachingSession
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
        db,
        lambda store: (
            f"removed session #{admin.remove_session(store, city, session_id).id} of "
            f"{admin.city_of(store, city).slug}"  # as stored: `--city Bogota` finds bogota
        ),
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
        found = admin.city_of(store, city)  # as stored: `--city Bogota` finds bogota
        repeat = f", repeating {session.rrule}" if session.rrule else ""
        when = local_when(session.start_local, found.zone)
        return f"added session #{session.id} for {found.slug}: {when}{repeat}{admin.archived_note(found)}"

    admin_write(db, action)


@session_app.command("list")
def session_list(
    city: Annotated[str, typer.Option("--city")], db: Db = None, as_json: AsJson = False
) -> None:
    """List a city's sessions, each with its next date, in the city's time.

    Columns (tab-separated when piped): id, title, start, minutes, repeats, until, skipped, uid, next.
    With --json, times are ISO-8601 with the city's offset."""
    engine = engine_for(db)
    now = SystemClock().now()
    with open_store(engine) as store:
        try:
            found = admin.city_of(store, city)
        except AdminError as error:
            raise fail(str(error)) from None
        rows = [_session_row(s, found.zone, now) for s in store.sessions_of(found.id)]  # type: ignore[arg-type]
    columns = ["id", "title", "start", "minutes", "repeats", "until", "skipped", "uid", "next"]
    print_rows(columns, rows, as_json, title=f"Sessions of {found.slug} ({found.zone})")


def _session_row(s: CoachingSession, zone: str, now: datetime) -> list[Value]:
    start = s.start_local.replace(tzinfo=ZoneInfo(zone))
    until = s.until_local.date() if s.until_local else None
    skipped = [datetime.fromisoformat(day).date() for day in s.exdates]
    following = upcoming([s], zone, now)
    return [
        s.id,
        s.title,
        Shown(local_when(s.start_local, zone), start.isoformat()),
        s.duration_min,
        s.rrule,
        Shown(EN.date(until), until.isoformat()) if until else None,
        Shown(", ".join(map(EN.date, skipped)), [day.isoformat() for day in skipped]),
        s.uid,
        Shown(instant_when(following[0].start, zone), following[0].local_start(zone).isoformat())
        if following
        else None,
    ]


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
    replace_all: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="The file is the city's whole calendar: sessions an earlier import brought in that it "
            "no longer has are removed (sessions added with `session add` stay).",
        ),
    ] = False,
    db: Db = None,
) -> None:
    """Import sessions from an iCalendar file; importing it again updates them by UID."""
    # iCalendar (2 MB) loads only for the commands that use it, not for every command or `serve`.
    from bot.calendar.ics import IcsError, import_calendar

    try:
        data = file.read_bytes()
    except OSError as error:
        raise fail(f"cannot read {file}: {error.strerror}") from None

    def action(store: Store) -> str:
        found = admin.city_of(store, city)
        try:
            report = import_calendar(store, found, data, SystemClock().now(), replace_all)
        except IcsError as error:
            raise AdminError(f"{file}: {error}") from None
        said = (
            f"imported {file.name} into {found.slug}: {report.created} new, {report.updated} updated, "
            f"{report.removed} removed, {report.skipped} skipped"
        )
        if report.absent:
            # Deleted at the source, or from another calendar: only the admin knows which.
            said += (
                f"; {report.absent} imported earlier and not in this file kept, still reminded "
                "(--replace removes them)"
            )
        return said

    admin_write(db, action)


@calendar_app.command("export")
def calendar_export(city: Annotated[str, typer.Option("--city")], db: Db = None) -> None:
    """Write a city's sessions as iCalendar to stdout."""
    from bot.calendar.ics import export_calendar

    engine = engine_for(db)
    with open_store(engine) as store:
        try:
            found = admin.city_of(store, city)
        except AdminError as error:
            raise fail(str(error)) from None
        data = export_calendar(found, store.sessions_of(found.id), SystemClock().now())  # type: ignore[arg-type]
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


MAX_NAMED = 5  # cities a message names before it counts the rest


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
        before = program_from(store.program_document()).cohort
        store.save_program(program.cohort, document, SystemClock().now())
        counts = f"{counted(len(program.phases), 'phase')}, {counted(len(program.events), 'event')}"
        loaded = f"loaded program calendar {program.cohort}: {counts}"
        staying = [city.slug for city in store.cities() if city.archived_at is None]
        if before == program.cohort or not staying or program.first_day is None:
            return loaded
        # A new cohort: every city not archived takes part in it, which is seldom what an admin means.
        named = ", ".join(staying[:MAX_NAMED]) + (", …" if len(staying) > MAX_NAMED else "")
        cities, still = counted(len(staying), "city", "cities"), "is" if len(staying) == 1 else "are"
        return (
            f"{loaded}\n{cities} of {before} {still} still in the program ({named}), nudged again from "
            f"{EN.date(program.first_day)}: archive those whose program is over "
            "(`cda-bot city archive SLUG…`)"
        )

    admin_write(db, action)


@program_app.command("show")
def program_show(db: Db = None, as_json: AsJson = False) -> None:
    """Show the program calendar in force.

    Piped, one line each (tab-separated): `cohort` NAME; `begins` FIRST-DAY and `ends` LAST-DAY (when
    the calendar gives them: no momentum nudges or weekly digests before or after); `phase` KEY NAME
    PATHWAY FROM TO; `event` KEY NAME WHEN. With --json, the calendar as loaded."""
    engine = engine_for(db)
    with open_store(engine) as store:
        program = program_from(store.program_document())
    if as_json:
        print(json.dumps(program.model_dump(mode="json", exclude_none=True), ensure_ascii=False, indent=2))
        return
    phases: list[list[Value]] = [
        [phase.key, local(phase.name, "en"), phase.pathway or "all", EN.date(phase.start), EN.date(phase.end)]
        for phase in program.phases
    ]
    events: list[list[Value]] = [
        [event.key, local(event.name, "en"), event_when(event)] for event in program.events
    ]
    first_day, last_day = program.first_day, program.last_day
    if not sys.stdout.isatty():
        print(tsv_line(["cohort", program.cohort]))
        if first_day is not None and last_day is not None:
            print(tsv_line(["begins", EN.date(first_day)]))
            print(tsv_line(["ends", EN.date(last_day)]))
        for kind, rows in (("phase", phases), ("event", events)):
            for row in rows:
                print(tsv_line([kind, *map(str, row)]))
        return
    out.print(f"cohort {program.cohort}", markup=False)
    if first_day is not None and last_day is not None:
        # What the scheduler does with the dates (scheduler/planner.py), where an admin looks for it.
        before = "no momentum nudges or weekly digests before it; quiet days count from it"
        out.print(f"begins {EN.date(first_day)}: {before}", markup=False)
        after = "no momentum nudges or weekly digests after it; session reminders go on"
        out.print(f"ends {EN.date(last_day)}: {after}", markup=False)
    print_rows(["key", "phase", "pathway", "from", "to"], phases, False, terminal=True)
    print_rows(["key", "event", "when"], events, False, terminal=True)


def event_when(event: Event) -> str:
    if event.date:
        return EN.date(event.date)
    if event.week_of:
        return f"week of {EN.date(event.week_of)}"
    if event.start and event.end:
        return f"{EN.date(event.start)} to {EN.date(event.end)}"
    if event.month:
        # As the calendar file gives it: the program has fixed the month, no day.
        return f"{event.month} (day not fixed)"
    if event.phase:
        return f"during {event.phase} (day not fixed)"
    return "set per city"
