"""Local times the clocks skip or repeat, in zones on both hemispheres: a skipped start is refused with
the next valid time; a repeated one is its first occurrence in answers, reminders and exports alike; a
series that lands in a gap is read the RFC 5545 way (the offset before the gap)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from bot import admin
from bot.calendar.ics import IcsError, export_calendar, import_calendar
from bot.calendar.sessions import between, upcoming
from bot.core.i18n import time_span
from scheduler.planner import plan
from store.models import CoachingSession
from store.repo import Store, open_store
from tests.conftest import NOW, TestBot


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def city(engine: Engine, zone: str, slug: str = "home") -> None:
    with open_store(engine) as store:
        admin.add_city(store, slug, slug.title(), zone, NOW)
        admin.add_member(store, f"console:{slug}-member", slug, NOW)


def ics(*lines: str) -> bytes:
    event = "\r\n".join(lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:clock@example.org\r\n"
        f"SUMMARY:Clock\r\n{event}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def add_session(engine: Engine, start: str) -> None:
    with open_store(engine) as store:
        admin.add_session(store, "home", start, NOW)


def sessions_of(store: Store, slug: str = "home") -> list[CoachingSession]:
    found = store.city_by_slug(slug)
    assert found is not None and found.id is not None
    return store.sessions_of(found.id)


def reminder_text(store: Store) -> str:
    """The one-hour reminder a pass planned (the 24-hour one was past its use by then)."""
    (row,) = [r for r in store.outbox() if r.kind == "reminder-60"]
    return str(row.payload["text"])


def import_into(engine: Engine, slug: str, data: bytes) -> None:
    with open_store(engine) as store:
        found = store.city_by_slug(slug)
        assert found is not None
        import_calendar(store, found, data, NOW)


# zone, a local time the clocks skip, the first valid time after it
GAPS = [
    ("America/Chicago", "2026-03-08T02:30", "2026-03-08 03:00"),
    ("Australia/Sydney", "2026-10-04T02:15", "2026-10-04 03:00"),
    ("America/Santiago", "2026-09-06T00:30", "2026-09-06 01:00"),  # Chile skips midnight
]


@pytest.mark.parametrize(("zone", "start", "next_valid"), GAPS, ids=[g[0] for g in GAPS])
def test_a_start_the_clocks_skip_is_refused_naming_the_next_valid_time(
    engine: Engine, zone: str, start: str, next_valid: str
) -> None:
    city(engine, zone)
    with pytest.raises(admin.AdminError, match=f"does not exist in {zone}.*next valid time is {next_valid}"):
        add_session(engine, start)
    stamp = start.replace("-", "").replace(":", "") + "00"
    with pytest.raises(
        IcsError, match=f"DTSTART .* does not exist in {zone}.*next valid time is {next_valid}"
    ):
        import_into(engine, "home", ics(f"DTSTART;TZID={zone}:{stamp}"))
    with pytest.raises(IcsError, match="does not exist"):
        import_into(engine, "home", ics(f"DTSTART:{stamp}"))  # floating: the city's own time
    with open_store(engine) as store:
        assert sessions_of(store) == []


# zone, a local start in the hour the clocks repeat, its first occurrence, how answers show 60 minutes
REPEATED = [
    ("America/Chicago", "2027-11-07T01:30", "2027-11-07T06:30", "01:30 CDT", "01:30 CDT–01:30 CST"),
    ("Australia/Sydney", "2027-04-04T02:30", "2027-04-03T15:30", "02:30 AEDT", "02:30 AEDT–02:30 AEST"),
    ("America/Santiago", "2027-04-03T23:30", "2027-04-04T02:30", "23:30 UTC-03", "23:30 UTC-03–23:30 UTC-04"),
]


@pytest.mark.parametrize(("zone", "start", "first", "shown", "_span"), REPEATED, ids=[r[0] for r in REPEATED])
def test_a_repeated_time_is_its_first_occurrence_in_reminders_and_exports(
    engine: Engine, zone: str, start: str, first: str, shown: str, _span: str
) -> None:
    city(engine, zone)
    city(engine, zone, "copy")
    with open_store(engine) as store:
        admin.add_session(store, "home", start, NOW)
        home = store.city_by_slug("home")
        assert home is not None
        (occurrence,) = upcoming(sessions_of(store), zone, NOW)
        exported = export_calendar(home, sessions_of(store), NOW)
        plan(store, utc(first) - timedelta(minutes=30))
        reminder = reminder_text(store)
    assert occurrence.start == utc(first)
    assert occurrence.end - occurrence.start == timedelta(minutes=60)
    assert f"{shown}." in reminder
    assert f"DTSTART;TZID={zone}:{start.replace('-', '').replace(':', '')}00" in exported.decode()
    import_into(engine, "copy", exported)
    with open_store(engine) as store:
        (again,) = upcoming(sessions_of(store, "copy"), zone, NOW)
    assert (again.start, again.end) == (occurrence.start, occurrence.end)


@pytest.mark.parametrize(("zone", "start", "first", "_shown", "span"), REPEATED, ids=[r[0] for r in REPEATED])
def test_a_repeated_time_is_shown_as_lasting_its_hour(
    testbot: TestBot, zone: str, start: str, first: str, _shown: str, span: str
) -> None:
    city(testbot.engine, zone)
    with testbot.store() as store:
        admin.add_session(store, "home", start, NOW)
    testbot.clock.set(utc(first) - timedelta(days=1))
    assert span in testbot.say("console:home-member", "/cda next")


def test_a_span_across_a_clock_change_names_the_zone_at_each_end() -> None:
    def hour_from(start: str) -> str:
        chicago = ZoneInfo("America/Chicago")
        return time_span(
            utc(start).astimezone(chicago), (utc(start) + timedelta(hours=1)).astimezone(chicago)
        )

    assert hour_from("2027-11-07T06:30") == "01:30 CDT–01:30 CST"
    assert hour_from("2027-11-08T16:00") == "10:00–11:00 CST"


def test_an_event_across_the_repeated_hour_lasts_in_real_time(engine: Engine) -> None:
    city(engine, "Australia/Sydney")
    # 02:30 summer time to 03:30 standard time: the clocks went back in between, so two hours.
    tz = "TZID=Australia/Sydney"
    import_into(engine, "home", ics(f"DTSTART;{tz}:20270404T023000", f"DTEND;{tz}:20270404T033000"))
    with open_store(engine) as store:
        (occurrence,) = upcoming(sessions_of(store), "Australia/Sydney", NOW)
    assert (occurrence.start, occurrence.end) == (utc("2027-04-03T15:30"), utc("2027-04-03T17:30"))


@pytest.mark.parametrize(
    ("zone", "given"),
    [("America/Chicago", "2026-11-01T01:30-06:00"), ("Australia/Sydney", "2027-04-04T02:30+10:00")],
)
def test_an_instant_in_the_second_pass_of_a_repeated_hour_is_refused_not_moved(
    engine: Engine, zone: str, given: str
) -> None:
    """Stored as wall time it would read as the first pass, an hour early."""
    city(engine, zone)
    with pytest.raises(admin.AdminError, match=r"is the second 0\d:30 of .*clocks go back"):
        add_session(engine, given)
    in_utc = datetime.fromisoformat(given).astimezone(UTC)
    with pytest.raises(IcsError, match=r"DTSTART \S+ is the second"):
        import_into(engine, "home", ics(f"DTSTART:{in_utc:%Y%m%dT%H%M%SZ}"))


# zone, a weekly series, the day it lands in a gap, the instants of that week and the next
SERIES = [
    (
        "America/Chicago",
        "2026-03-01T02:30",
        "2026-03-08",
        ["2026-03-08T08:30", "2026-03-15T07:30"],
        "03:30 CDT",
    ),
    (
        "Australia/Sydney",
        "2026-09-27T02:30",
        "2026-10-04",
        ["2026-10-03T16:30", "2026-10-10T15:30"],
        "03:30 AEDT",
    ),
    (
        "America/Santiago",
        "2026-08-30T00:30",
        "2026-09-06",
        ["2026-09-06T04:30", "2026-09-13T03:30"],
        "01:30 UTC-03",
    ),
]


@pytest.mark.parametrize(
    ("zone", "start", "gap_day", "instants", "shown"), SERIES, ids=[s[0] for s in SERIES]
)
def test_a_series_landing_in_a_gap_keeps_the_offset_before_it_and_can_be_skipped(
    engine: Engine, zone: str, start: str, gap_day: str, instants: list[str], shown: str
) -> None:
    city(engine, zone)
    city(engine, zone, "copy")
    with open_store(engine) as store:
        admin.add_session(store, "home", start, NOW, 60, None, "FREQ=WEEKLY", "2026-12-31")
        window = between(
            sessions_of(store),
            zone,
            utc(instants[0]) - timedelta(hours=1),
            utc(instants[1]) + timedelta(hours=1),
        )
        # The week of the gap is an hour later on the clock (RFC 5545: the offset before the gap), like a
        # calendar app reading our export; the week after is back at the series' time.
        assert [o.start for o in window] == [utc(i) for i in instants]
        plan(store, utc(instants[0]) - timedelta(minutes=30))
        assert f"{shown}." in reminder_text(store)
        admin.skip_day(store, "home", gap_day, NOW)
        home = store.city_by_slug("home")
        assert home is not None
        exported = export_calendar(home, sessions_of(store), NOW)
    import_into(engine, "copy", exported)  # the skipped week stays skipped through an export
    with open_store(engine) as store:
        for slug in ("home", "copy"):
            window = between(sessions_of(store, slug), zone, utc(instants[0]) - timedelta(hours=1), NOW)
            assert window[0].start == utc(instants[1])
