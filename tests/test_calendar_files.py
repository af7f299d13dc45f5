"""iCalendar import and export, the program calendar file, and cancelling a day of sessions."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bot import admin
from bot.calendar.ics import IcsError, export_calendar, import_calendar
from bot.calendar.program import ProgramFileError, default_document, load_program_file
from bot.calendar.sessions import Occurrence, between
from bot.cli import app
from store.repo import open_store
from tests.conftest import NOW

DATA = Path(__file__).parent / "data"
runner = CliRunner()
WINDOW = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC))


def occurrences(engine: Engine, slug: str) -> list[tuple[datetime, datetime, str, bool]]:
    with open_store(engine) as store:
        city = store.city_by_slug(slug)
        assert city is not None and city.id is not None
        found: list[Occurrence] = between(store.sessions_of(city.id), city.zone, *WINDOW)
    return [(o.start, o.end, o.title, o.all_day) for o in found]


@pytest.fixture
def two_cities(engine: Engine) -> Engine:
    with open_store(engine) as store:
        admin.add_city(store, "home", "Home", "America/New_York", NOW)
        admin.add_city(store, "away", "Away", "America/New_York", NOW)
        admin.add_city(store, "bogota", "Bogotá", "America/Bogota", NOW)
    return engine


def test_google_export_is_imported_with_zones_exceptions_and_all_day(two_cities: Engine) -> None:
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None
        report = import_calendar(store, home, (DATA / "google-export.ics").read_bytes(), NOW)
    assert (report.created, report.updated, report.removed, report.skipped) == (4, 0, 0, 1)
    found = occurrences(two_cities, "home")
    starts = [(s.astimezone(UTC).isoformat(), title) for s, _e, title, _a in found]
    # 11:00 EDT is 15:00Z until 1 Nov; 11:00 EST is 16:00Z after it.
    assert starts[0] == ("2026-10-06T15:00:00+00:00", "Weekly coaching")
    assert ("2026-11-03T16:00:00+00:00", "Weekly coaching") in starts
    assert not any(s.startswith("2026-11-24") for s, _t in starts)  # EXDATE
    assert not any(s.startswith("2026-12-01") for s, _t in starts)  # moved by RECURRENCE-ID…
    assert ("2026-12-03T20:00:00+00:00", "Weekly coaching (moved to Thursday)") in starts  # …to here
    assert starts[-1] == ("2026-12-15T17:00:00+00:00", "Data check-in")  # a UTC time, kept as an instant
    assert ("2026-12-15T16:00:00+00:00", "Weekly coaching") in starts  # UNTIL 22 Dec 15:59Z keeps the 15th
    all_day = [row for row in found if row[3]]
    assert [(s.astimezone(UTC).isoformat(), e - s) for s, e, _t, _a in all_day] == [
        ("2026-12-10T05:00:00+00:00", timedelta(days=1))
    ]
    assert not any("Cancelled" in title for _s, _e, title, _a in found)


def test_export_then_import_elsewhere_gives_the_same_sessions(two_cities: Engine) -> None:
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        away = store.city_by_slug("away")
        assert home and away
        import_calendar(store, home, (DATA / "google-export.ics").read_bytes(), NOW)
        admin.add_session(
            store, "home", "2027-01-05T09:00", NOW, 90, "Series", "FREQ=WEEKLY;BYDAY=TU", "2027-03-30"
        )
        admin.skip_day(store, "home", "2027-02-16", NOW)
        exported = export_calendar(home, store.sessions_of(home.id), NOW)  # type: ignore[arg-type]
        import_calendar(store, away, exported, NOW)
    assert occurrences(two_cities, "away") == occurrences(two_cities, "home")
    assert len(occurrences(two_cities, "home")) > 20


def test_reimport_updates_by_uid_without_duplicates(two_cities: Engine) -> None:
    data = (DATA / "google-export.ics").read_bytes()
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None
        import_calendar(store, home, data, NOW)
        before = len(store.sessions_of(home.id))  # type: ignore[arg-type]
        changed = data.replace(b"SUMMARY:Data check-in", b"SUMMARY:Data check-in (longer)").replace(
            b"DTEND:20261215T173000Z", b"DTEND:20261215T180000Z"
        )
        report = import_calendar(store, home, changed, NOW)
        assert (report.created, report.updated) == (0, 4)
        sessions = store.sessions_of(home.id)  # type: ignore[arg-type]
        assert len(sessions) == before == 4
        check_in = next(s for s in sessions if s.uid == "check-in-9@example.org")
        assert (check_in.title, check_in.duration_min) == ("Data check-in (longer)", 60)


def test_a_cancelled_event_removes_the_session_it_names(two_cities: Engine) -> None:
    data = (DATA / "google-export.ics").read_bytes()
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None
        import_calendar(store, home, data, NOW)
        cancelled = data.replace(b"SUMMARY:Data check-in", b"SUMMARY:Data check-in\r\nSTATUS:CANCELLED")
        report = import_calendar(store, home, cancelled, NOW)
        assert report.removed == 1
        assert "check-in-9@example.org" not in {s.uid for s in store.sessions_of(home.id)}  # type: ignore[arg-type]


def _without(data: bytes, marker: bytes) -> bytes:
    """The calendar without the event whose lines include `marker`: deleted at the source."""
    head, *events = data.split(b"BEGIN:VEVENT")
    kept = [event for event in events if marker not in event.split(b"END:VEVENT")[0]]
    assert len(kept) == len(events) - 1
    return b"BEGIN:VEVENT".join([head, *kept])


def test_an_event_deleted_at_the_source_is_kept_and_counted_unless_the_file_replaces_the_calendar(
    two_cities: Engine,
) -> None:
    """A re-import cannot tell an event deleted at the source from one of another calendar imported into
    the same city: it keeps it and says so; `--replace` takes the file as the whole calendar. A
    session added by hand is never the file's to remove."""
    data = (DATA / "google-export.ics").read_bytes()
    deleted = _without(data, b"UID:check-in-9@example.org")
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None and home.id is not None
        import_calendar(store, home, data, NOW)
        admin.add_session(store, "home", "2026-12-17T10:00", NOW, 30, "Added by hand")
        kept = import_calendar(store, home, deleted, NOW)
        assert (kept.updated, kept.removed, kept.absent) == (3, 0, 1)
        assert "check-in-9@example.org" in {s.uid for s in store.sessions_of(home.id)}
        replaced = import_calendar(store, home, deleted, NOW, replace_all=True)
        assert (replaced.removed, replaced.absent) == (1, 0)
        titles = {s.title for s in store.sessions_of(home.id)}
        assert "Data check-in" not in titles and "Added by hand" in titles


def test_a_moved_occurrence_no_longer_moved_at_the_source_is_back_at_its_usual_time(
    two_cities: Engine,
) -> None:
    data = (DATA / "google-export.ics").read_bytes()
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None
        import_calendar(store, home, data, NOW)
    moved = [o for o in occurrences(two_cities, "home") if o[2] == "Weekly coaching (moved to Thursday)"]
    assert len(moved) == 1
    with open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None
        report = import_calendar(store, home, _without(data, b"RECURRENCE-ID"), NOW)
        assert (report.removed, report.absent) == (1, 0)
    after = occurrences(two_cities, "home")
    assert not [o for o in after if o[2] == "Weekly coaching (moved to Thursday)"]
    # Tuesday 1 December, 11:00 in New York, is a weekly coaching session again, once.
    assert [o[2] for o in after if o[0] == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)] == ["Weekly coaching"]


def test_import_into_another_zone_keeps_the_instant(two_cities: Engine) -> None:
    with open_store(two_cities) as store:
        bogota = store.city_by_slug("bogota")
        assert bogota is not None
        import_calendar(store, bogota, (DATA / "google-export.ics").read_bytes(), NOW)
        check_in = next(s for s in store.sessions_of(bogota.id) if s.uid == "check-in-9@example.org")  # type: ignore[arg-type]
        assert check_in.start_local == datetime(2026, 12, 15, 12, 0)  # 17:00Z is noon in Bogotá


@pytest.mark.parametrize(
    "data", [b"", b"not a calendar", b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n"]
)
def test_a_broken_file_is_refused(two_cities: Engine, data: bytes) -> None:
    with pytest.raises(IcsError), open_store(two_cities) as store:
        home = store.city_by_slug("home")
        assert home is not None
        import_calendar(store, home, data, NOW)


def test_calendar_commands(db_url: str, tmp_path: Path) -> None:
    assert (
        runner.invoke(
            app, ["city", "add", "home", "--name", "Home", "--tz", "America/New_York", "--db", db_url]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app, ["calendar", "import", str(DATA / "google-export.ics"), "--city", "home", "--db", db_url]
    )
    assert result.exit_code == 0, result.stderr
    assert "4 new, 0 updated, 0 removed, 1 skipped" in result.stdout
    again = runner.invoke(
        app, ["calendar", "import", str(DATA / "google-export.ics"), "--city", "home", "--db", db_url]
    )
    assert "0 new, 4 updated" in again.stdout and "not in this file" not in again.stdout
    deleted = tmp_path / "deleted.ics"
    deleted.write_bytes(_without((DATA / "google-export.ics").read_bytes(), b"UID:check-in-9@example.org"))
    kept = runner.invoke(app, ["calendar", "import", str(deleted), "--city", "home", "--db", db_url])
    assert kept.exit_code == 0, kept.stderr
    assert (
        "1 imported earlier and not in this file kept, still reminded (--replace removes them)" in kept.stdout
    )
    replaced = runner.invoke(
        app, ["calendar", "import", str(deleted), "--city", "home", "--replace", "--db", db_url]
    )
    assert replaced.exit_code == 0 and "0 new, 3 updated, 1 removed" in replaced.stdout
    exported = runner.invoke(app, ["calendar", "export", "--city", "home", "--db", db_url])
    assert exported.exit_code == 0
    assert "BEGIN:VTIMEZONE" in exported.stdout and "UID:weekly-coaching-42@example.org" in exported.stdout
    assert "RRULE:FREQ=WEEKLY;UNTIL=20261222T155959Z;BYDAY=TU" in exported.stdout
    bad = tmp_path / "bad.ics"
    bad.write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nSUMMARY:no start\nEND:VEVENT\nEND:VCALENDAR\n")
    refused = runner.invoke(app, ["calendar", "import", str(bad), "--city", "home", "--db", db_url])
    assert refused.exit_code == 1 and "bad.ics: event x (no start): DTSTART: missing" in refused.stderr
    missing = runner.invoke(
        app, ["calendar", "import", str(tmp_path / "nope.ics"), "--city", "home", "--db", db_url]
    )
    assert missing.exit_code == 1 and "cannot read" in missing.stderr
    listed = runner.invoke(app, ["session", "list", "--city", "home", "--db", db_url])
    assert listed.exit_code == 0 and "Weekly coaching" in listed.stdout


def test_skip_a_day_cancels_that_days_sessions_only(db_url: str, engine: Engine) -> None:
    for args in (
        ["city", "add", "home", "--name", "Home", "--tz", "America/New_York"],
        [
            "session",
            "add",
            "--city",
            "home",
            "--start",
            "2026-12-01T10:00",
            "--rrule",
            "FREQ=WEEKLY",
            "--until",
            "2027-01-31",
        ],
        ["session", "add", "--city", "home", "--start", "2026-12-22T15:00", "--title", "Extra"],
    ):
        assert runner.invoke(app, [*args, "--db", db_url]).exit_code == 0
    result = runner.invoke(app, ["session", "skip", "--city", "home", "--date", "2026-12-22", "--db", db_url])
    assert (
        result.exit_code == 0
        and "Coaching session 2026-12-22 10:00" in result.stdout
        and "Extra" in result.stdout
    )
    days = {s.date().isoformat() for s, *_ in occurrences(engine, "home")}
    assert "2026-12-22" not in days and {"2026-12-15", "2026-12-29"} <= days
    nothing = runner.invoke(
        app, ["session", "skip", "--city", "home", "--date", "2026-12-23", "--db", db_url]
    )
    assert nothing.exit_code == 1 and "has no session on 2026-12-23" in nothing.stderr


BAD_PROGRAMS = [
    (
        "cohort: x\nphases:\n  - key: a\n    name: A\n    start: 2026-13-01\n    end: 2026-12-01\n",
        ":5: phases.0.start:",
    ),
    (
        "cohort: x\nphases: []\nevents:\n  - key: e\n    name: E\n    date: 2027-01-01\n    month: 2027-01\n",
        ":4: events.0:",
    ),
    (
        "cohort: x\nphases:\n  - key: a\n    name: A\n    start: 2026-01-01\n    end: 2025-01-01\n",
        ":3: phases.0: phase 'a' ends",
    ),
    ("cohort: x\nphases: [\n", ":3: not valid YAML"),
    ("- just a list\n", ":1: a program calendar is a mapping"),
    (
        "cohort: x\nphases:\n  - key: a\n    name: A\n    start: 2026-01-01\n    end: 2026-02-01\n"
        "    pathway: fast\n",
        ":7: phases.0.pathway:",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_PROGRAMS)
def test_a_bad_program_file_names_the_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "program.yaml"
    path.write_text(text)
    with pytest.raises(ProgramFileError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_program_file(path)


def test_program_load_replaces_the_calendar_and_a_bad_file_keeps_the_old_one(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    good = tmp_path / "next.yaml"
    good.write_text(
        "cohort: 2027-28\nphases:\n  - key: scoping\n    name: {en: Scoping 2027, es: Alcance 2027}\n"
        "    start: 2027-06-01\n    end: 2027-08-31\nevents:\n  - key: convening\n"
        "    name: Lisbon convening\n    month: 2028-01\n"
    )
    result = runner.invoke(app, ["program", "load", str(good), "--db", db_url])
    assert result.exit_code == 0 and "2027-28: 1 phase, 1 event" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cohort: broken\nphases:\n  - key: p\n    name: P\n    start: soon\n    end: 2027-01-01\n")
    refused = runner.invoke(app, ["program", "load", str(bad), "--db", db_url])
    assert refused.exit_code == 1 and "bad.yaml:5: phases.0.start:" in refused.stderr
    with open_store(engine) as store:
        assert (store.program_document() or {})["cohort"] == "2027-28"
    shown = runner.invoke(app, ["program", "show", "--db", db_url])
    assert "2028-01 (day not fixed)" in shown.stdout


ODD_PROGRAMS = [
    # A phase at datetime's end: loaded, every scheduler pass then raised OverflowError.
    (
        "cohort: far\nphases:\n  - key: a\n    name: A\n    start: 9999-12-01\n    end: 9999-12-31\n",
        ":5: phases.0.start: 9999-12-01 is out of range: give a date from 1900 to 2999",
    ),
    (
        "cohort: far\nphases: []\nevents:\n  - {key: e, name: E, month: 9999-12}\n",
        ":4: events.0.month: 9999-12",
    ),
    (
        "cohort: far\nphases: []\nevents:\n  - {key: e, name: E, week_of: 0001-01-01}\n",
        ":4: events.0.week_of",
    ),
    # An alias inside itself, or nesting deeper than Python recurses: a traceback.
    ("cohort: &c [*c]\nphases: []\n", ": not valid YAML (nested too deeply, or an alias inside itself)"),
    (
        "cohort: " + "[" * 5000 + "]" * 5000 + "\n",
        ": not valid YAML (nested too deeply, or an alias inside itself)",
    ),
]


@pytest.mark.parametrize(("text", "message"), ODD_PROGRAMS, ids=range(len(ODD_PROGRAMS)))
def test_program_load_refuses_an_odd_file_in_one_line_and_keeps_the_old_calendar(
    db_url: str, engine: Engine, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    refused = runner.invoke(app, ["program", "load", str(path), "--db", db_url])
    assert refused.exit_code == 1 and refused.stderr.startswith(f"error: {path}{message}"), refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    with open_store(engine) as store:
        assert store.program_document() is None


def test_bundled_calendar_loads_cleanly() -> None:
    document = default_document()
    assert document["cohort"] == "2026-27" and len(document["events"]) == 11
