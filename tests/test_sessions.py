"""Session times: local wall-clock time in the city's zone, across daylight-saving changes."""

from datetime import UTC, datetime

import pytest

from bot import admin
from bot.calendar.sessions import upcoming
from store.models import CoachingSession
from tests.conftest import TestBot


def weekly(
    start: str, rule: str = "FREQ=WEEKLY", until: datetime | None = None, **kw: object
) -> CoachingSession:
    return CoachingSession(
        id=1, city_id=1, start_local=datetime.fromisoformat(start), rrule=rule, until_local=until, **kw
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "start", "now", "expected_utc"),
    [
        # America/Chicago leaves daylight time on Sun 1 Nov 2026: 10:00 CDT is 15:00Z, 10:00 CST is 16:00Z.
        ("America/Chicago", "2026-10-20T10:00", "2026-10-27T16:00", ["2026-11-03T16:00", "2026-11-10T16:00"]),
        ("America/Chicago", "2026-10-20T10:00", "2026-10-26T00:00", ["2026-10-27T15:00", "2026-11-03T16:00"]),
        # Europe/London leaves summer time on Sun 25 Oct 2026.
        ("Europe/London", "2026-10-13T09:30", "2026-10-20T09:00", ["2026-10-27T09:30", "2026-11-03T09:30"]),
        ("Europe/London", "2026-10-13T09:30", "2026-10-14T00:00", ["2026-10-20T08:30", "2026-10-27T09:30"]),
        # America/Santiago leaves summer time on Sun 4 Apr 2027 (UTC-3 to UTC-4).
        (
            "America/Santiago",
            "2027-03-23T10:00",
            "2027-03-31T00:00",
            ["2027-04-06T14:00", "2027-04-13T14:00"],
        ),
        (
            "America/Santiago",
            "2027-03-23T10:00",
            "2027-03-29T00:00",
            ["2027-03-30T13:00", "2027-04-06T14:00"],
        ),
    ],
)
def test_weekly_session_keeps_local_time_across_dst(
    zone: str, start: str, now: str, expected_utc: list[str]
) -> None:
    found = upcoming([weekly(start)], zone, at(now), count=2)
    assert [o.start for o in found] == [at(e) for e in expected_utc]
    assert all(o.local_start(zone).strftime("%H:%M") == start[-5:] for o in found)


def test_a_session_that_has_started_is_not_next() -> None:
    found = upcoming([weekly("2026-12-01T10:00")], "America/Chicago", at("2026-12-01T16:00"), count=1)
    assert found[0].start == at("2026-12-08T16:00")


def test_until_and_exdates_bound_the_series() -> None:
    session = weekly(
        "2026-12-01T10:00", until=datetime(2026, 12, 15, 23, 59), exdates=["2026-12-08T10:00:00"]
    )
    found = upcoming([session], "America/Chicago", at("2026-11-28T00:00"), count=5)
    assert [o.start.date().isoformat() for o in found] == ["2026-12-01", "2026-12-15"]


def test_one_off_and_recurring_merge_in_order() -> None:
    one_off = CoachingSession(id=2, city_id=1, title="MVP prep", start_local=datetime(2026, 12, 3, 8, 0))
    found = upcoming([weekly("2026-12-01T10:00"), one_off], "America/Bogota", at("2026-11-28T00:00"), count=3)
    assert [o.title for o in found] == ["Coaching session", "MVP prep", "Coaching session"]


def test_next_session_reply_reads_in_the_citys_zone(world: TestBot) -> None:
    # Alpha (America/Chicago) meets Tuesdays 10:00; Saturday 28 Nov 12:00Z is three days before.
    reply = world.say("console:a1", "when is our next session?")
    assert "Tue 1 Dec 2026, 10:00–11:00 CST (in 3 days)" in reply
    assert "The one after: ALPHA session: Tue 8 Dec 2026" in reply


def test_zone_without_letter_abbreviation_reads_as_utc_offset(world: TestBot) -> None:
    assert "jue 3 dic 2026, 09:00–10:00 UTC-05 (en 5 días)" in world.say("console:g1", "/cda next")


def test_city_with_no_sessions_is_told_so(testbot: TestBot) -> None:
    with testbot.store() as store:
        admin.add_city(store, "solo", "Solo", "Asia/Tokyo", testbot.clock.now())
        admin.add_member(store, "console:s1", "solo", testbot.clock.now())
    assert "No coaching session is scheduled for Solo yet" in testbot.say("console:s1", "/cda next")
