"""When a city's coaching sessions happen: one-off and recurring (RRULE) in the city's zone."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from store.models import CoachingSession

ALL_DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Occurrence:
    session_id: int
    title: str
    start: datetime  # aware, UTC
    end: datetime
    all_day: bool = False

    def local_start(self, zone: str) -> datetime:
        return self.start.astimezone(ZoneInfo(zone))


def is_all_day(session: CoachingSession) -> bool:
    """All-day sessions (imported from calendars) start at midnight and last whole days."""
    start = session.start_local
    return start.hour == start.minute == 0 and session.duration_min % ALL_DAY_MINUTES == 0


def parse_rule(rule: str, start_local: datetime, until_local: datetime | None) -> rrule:
    """The recurrence of a session; raises ValueError for a rule dateutil cannot read."""
    parsed = rrulestr(rule, dtstart=start_local, ignoretz=True)
    if not isinstance(parsed, rrule):
        raise ValueError("give one RRULE (no RDATE/EXRULE sets)")
    if until_local is not None:
        parsed = parsed.replace(until=until_local)
    return parsed


def _local_starts(session: CoachingSession, after_local: datetime) -> Iterator[datetime]:
    if not session.rrule:
        if session.start_local >= after_local:
            yield session.start_local
        return
    rule = parse_rule(session.rrule, session.start_local, session.until_local)
    excluded = {datetime.fromisoformat(d) for d in session.exdates}
    current = rule.after(after_local, inc=True)
    while current is not None:
        if current not in excluded:
            yield current
        current = rule.after(current)


def _occurrences(session: CoachingSession, zone: str, after: datetime) -> Iterator[Occurrence]:
    """Occurrences of one session starting after `after` (UTC), in order."""
    tz = ZoneInfo(zone)
    # A day of slack covers the gap between local and UTC; exact filtering follows.
    after_local = after.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
    assert session.id is not None
    all_day = is_all_day(session)
    for local in _local_starts(session, after_local):
        start = local.replace(tzinfo=tz).astimezone(UTC)
        if start > after:
            yield Occurrence(
                session.id, session.title, start, start + timedelta(minutes=session.duration_min), all_day
            )


def upcoming(
    sessions: Iterable[CoachingSession], zone: str, now: datetime, count: int = 1
) -> list[Occurrence]:
    """The next `count` sessions that start after `now`, soonest first."""
    found: list[Occurrence] = []
    for session in sessions:
        for taken, occurrence in enumerate(_occurrences(session, zone, now), start=1):
            found.append(occurrence)
            if taken >= count:
                break
    found.sort(key=lambda o: o.start)
    return found[:count]


def between(
    sessions: Iterable[CoachingSession], zone: str, start: datetime, end: datetime
) -> list[Occurrence]:
    """Every session starting in [start, end), soonest first."""
    found: list[Occurrence] = []
    for session in sessions:
        for occurrence in _occurrences(session, zone, start - timedelta(microseconds=1)):
            if occurrence.start >= end:
                break
            found.append(occurrence)
    found.sort(key=lambda o: o.start)
    return found


def last_before(sessions: Iterable[CoachingSession], zone: str, instant: datetime) -> Occurrence | None:
    """The latest session that started before `instant`."""
    tz = ZoneInfo(zone)
    before_local = instant.astimezone(tz).replace(tzinfo=None)
    latest: Occurrence | None = None
    for session in sessions:
        assert session.id is not None
        if session.rrule:
            rule = parse_rule(session.rrule, session.start_local, session.until_local)
            excluded = {datetime.fromisoformat(d) for d in session.exdates}
            local = rule.before(before_local)
            while local is not None and local in excluded:
                local = rule.before(local)
        else:
            local = session.start_local if session.start_local < before_local else None
        if local is None:
            continue
        start = local.replace(tzinfo=tz).astimezone(UTC)
        if start < instant and (latest is None or start > latest.start):
            end = start + timedelta(minutes=session.duration_min)
            latest = Occurrence(session.id, session.title, start, end, is_all_day(session))
    return latest
