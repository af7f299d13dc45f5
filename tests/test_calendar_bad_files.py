"""A calendar file with a bad event is refused whole, in one line naming the event and the field, and
`calendar import` and `session add` keep the same rules."""

from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bot.cli import app
from store.models import CoachingSession
from store.repo import open_store

runner = CliRunner()

GOOD = "UID:good-1@example.org\nSUMMARY:Weekly coaching\nDTSTART;TZID=America/Chicago:20261201T100000\n"


def calendar(*events: str) -> str:
    """An iCalendar file of these events (each given as its property lines)."""
    body = "".join(f"BEGIN:VEVENT\n{event}END:VEVENT\n" for event in events)
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{body}END:VCALENDAR\n"


def run(db_url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--db", db_url])
    return result.exit_code, result.stdout, result.stderr


def sessions(engine: Engine) -> list[CoachingSession]:
    with open_store(engine) as store:
        city = store.city_by_slug("home")
        assert city is not None and city.id is not None
        return store.sessions_of(city.id)


@pytest.fixture
def home(db_url: str) -> str:
    code, _out, err = run(db_url, "city", "add", "home", "--name", "Home", "--tz", "America/Chicago")
    assert code == 0, err
    return db_url


BAD_EVENTS = [
    ("UID:b1\nSUMMARY:Clinic\nDTSTART:notadate\n", "event b1 (Clinic): DTSTART: "),
    (
        "UID:b2\nSUMMARY:Clinic\nDTSTART;TZID=Mars/Olympus:20261201T100000\n",
        "event b2 (Clinic): DTSTART: unknown time zone 'Mars/Olympus'",
    ),
    (
        "UID:b3\nSUMMARY:Clinic\nDTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;BYDAY=TU\n",
        "event b3 (Clinic): a recurring session needs UNTIL (or COUNT= in RRULE)",
    ),
    ("UID:b4\nDTSTART:20261201T100000\nRRULE:FREQ=SOMETIMES;COUNT=3\n", "event b4: RRULE: "),
    (
        "UID:b5\nDTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;UNTIL=20261101T000000Z\n",
        "event b5: UNTIL is before DTSTART",
    ),
    ("SUMMARY:Clinic\nDTSTART:20261201T100000\nDTEND:20261201T090000\n", "event Clinic: DTEND is not after"),
    ("UID:b7\nDTSTART:20261201T100000\nDURATION:-PT1H\n", "event b7: DURATION is not after DTSTART"),
    ("UID:b8\nDTSTART:20261201T100000\nDTEND:nope\n", "event b8: DTEND: "),
    (
        "UID:b9\nDTSTART;VALUE=DATE:20261201\nDTEND:20261201T100000\n",
        "event b9: DTEND: a date-time while DTSTART is a date",
    ),
    (
        "UID:b10\nDTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;COUNT=5\nEXDATE;TZID=Nowhere/X:20261208T100000\n",
        "event b10: EXDATE: unknown time zone 'Nowhere/X'",
    ),
    (
        "UID:b11\nDTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;COUNT=5\nRRULE:FREQ=DAILY;COUNT=2\n",
        "event b11: RRULE: more than one rule",
    ),
    # Dates at datetime's ends: a traceback, or a session that lists, exports and every scheduler
    # pass then raised OverflowError on.
    ("UID:b12\nDTSTART;VALUE=DATE:99991231\n", "event b12: DTSTART 9999-12-31 is out of range"),
    ("UID:b13\nDTSTART;TZID=Asia/Tokyo:00010101T010000\n", "event b13: DTSTART 0001-01-01 is out of range"),
    ("UID:b14\nDTSTART:20261201T100000\nDTEND:99991231T233000\n", "event b14: a date is out of range"),
    ("UID:b15\nDTSTART:20261201T100000\nDURATION:P3000000D\n", "event b15: DURATION is more than a year"),
    (
        "UID:b16\nDTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;UNTIL=99991231\n",
        "event b16: UNTIL 9999-12-31 is out of range",
    ),
    # RFC 5545: UNTIL and COUNT must not both occur (dateutil ended the series at the earlier one).
    (
        "UID:b19\nDTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;COUNT=10;UNTIL=20270101T000000Z\n",
        "event b19: RRULE has COUNT and UNTIL: a series ends by one of them, not both",
    ),
    # Thousands of occurrences a month, which every scheduler pass would work through for every city.
    (
        "UID:b17\nDTSTART:20261201T100000\nRRULE:FREQ=MINUTELY;COUNT=50000\n",
        "event b17: bad RRULE 'FREQ=MINUTELY;COUNT=50000': a session repeats once a day at most",
    ),
    (
        "UID:b18\nDTSTART:20261201T100000\nRRULE:FREQ=DAILY;BYHOUR=9,10,11;COUNT=30\n",
        "event b18: bad RRULE 'FREQ=DAILY;COUNT=30;BYHOUR=9,10,11': a session repeats once a day at most",
    ),
]


@pytest.mark.parametrize(("event", "message"), BAD_EVENTS, ids=[m.split(":")[0] for _e, m in BAD_EVENTS])
def test_a_bad_event_refuses_the_file_in_one_line_and_stores_nothing(
    home: str, engine: Engine, tmp_path: Path, event: str, message: str
) -> None:
    path = tmp_path / "team.ics"
    path.write_text(calendar(GOOD, event))  # the good event first: it must not stay behind either
    code, _out, err = run(home, "calendar", "import", str(path), "--city", "home")
    assert code == 1
    assert err.startswith(f"error: {path}: {message}"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sessions(engine) == []


# The same session, as `session add` arguments and as an event: each rule refuses both the same way.
SAME_RULES = [
    (
        ["--start", "2026-12-01T10:00", "--rrule", "FREQ=WEEKLY"],
        "DTSTART:20261201T100000\nRRULE:FREQ=WEEKLY\n",
        "needs",
    ),
    (
        ["--start", "2026-12-01T10:00", "--rrule", "FREQ=WEEKLY", "--until", "2026-11-01"],
        "DTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;UNTIL=20261101\n",
        "is before",
    ),
    (
        ["--start", "2026-12-01T10:00", "--rrule", "FREQ=SOMETIMES;COUNT=2"],
        "DTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;BYDAY=XX;COUNT=2\n",
        "rrule",
    ),
    (["--start", "2026-03-08T02:30"], "DTSTART:20260308T023000\n", "does not exist"),
    (["--start", "9999-12-31T23:30"], "DTSTART:99991231T233000\n", "is out of range"),
    (
        ["--start", "2026-12-01T10:00", "--rrule", "FREQ=WEEKLY;INTERVAL=0;COUNT=4"],
        "DTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;INTERVAL=0;COUNT=4\n",
        "interval must be",
    ),
    (
        ["--start", "2026-12-01T10:00", "--rrule", "FREQ=WEEKLY;COUNT=10", "--until", "2027-01-01"],
        "DTSTART:20261201T100000\nRRULE:FREQ=WEEKLY;COUNT=10;UNTIL=20270101\n",
        "has count and",
    ),
]


@pytest.mark.parametrize(("args", "event", "reason"), SAME_RULES)
def test_session_add_and_calendar_import_refuse_the_same_sessions(
    home: str, engine: Engine, tmp_path: Path, args: list[str], event: str, reason: str
) -> None:
    code, _out, err = run(home, "session", "add", "--city", "home", *args)
    assert code == 1 and reason in err.lower(), err
    path = tmp_path / "one.ics"
    path.write_text(calendar(f"UID:same@example.org\n{event}"))
    code, _out, err = run(home, "calendar", "import", str(path), "--city", "home")
    assert code == 1 and "event same@example.org" in err and reason in err.lower(), err
    assert sessions(engine) == []


def test_a_bounded_series_and_a_known_zone_are_imported(home: str, engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "fine.ics"
    path.write_text(
        calendar(
            f"{GOOD}RRULE:FREQ=WEEKLY;COUNT=4\n",
            "UID:ok-2\nDTSTART;TZID=Europe/Madrid:20261202T170000\nDTEND;TZID=Europe/Madrid:20261202T180000\n",
        )
    )
    code, out, err = run(home, "calendar", "import", str(path), "--city", "home")
    assert code == 0 and "2 new" in out, err
    madrid = next(s for s in sessions(engine) if s.uid == "ok-2")
    assert (madrid.start_local.isoformat(), madrid.duration_min) == ("2026-12-02T10:00:00", 60)
