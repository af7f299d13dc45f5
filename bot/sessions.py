"""When a city's coaching sessions happen: one-off and recurring (RRULE) in the city's zone."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from store.models import CoachingSession


@dataclass(frozen=True)
class Occurrence:
    session_id: int
    title: str
    start: datetime  # aware, UTC
    end: datetime

    def local_start(self, zone: str) -> datetime:
        return self.start.astimezone(ZoneInfo(zone))


def parse_rule(rule: str, start_local: datetime, until_local: datetime | None) -> rrule:
    """The recurrence of a session; raises ValueError for a rule dateutil cannot read."""
    parsed = rrulestr(rule, dtstart=start_local, ignoretz=True)
    if not isinstance(parsed, rrule):
        raise ValueError("give one RRULE (no RDATE/EXRULE sets)")
    if until_local is not None:
        parsed = parsed.replace(until=until_local)
    return parsed


def _local_starts(session: CoachingSession, after_local: datetime) -> Iterable[datetime]:
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


def upcoming(
    sessions: Iterable[CoachingSession], zone: str, now: datetime, count: int = 1
) -> list[Occurrence]:
    """The next `count` sessions that start after `now`, soonest first."""
    tz = ZoneInfo(zone)
    # A day of slack covers daylight-saving shifts between local and UTC; exact filtering follows.
    after_local = now.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
    found: list[Occurrence] = []
    for session in sessions:
        taken = 0
        for local in _local_starts(session, after_local):
            start = local.replace(tzinfo=tz).astimezone(UTC)
            if start <= now:
                continue
            assert session.id is not None
            found.append(
                Occurrence(session.id, session.title, start, start + timedelta(minutes=session.duration_min))
            )
            taken += 1
            if taken >= count:
                break
    found.sort(key=lambda o: o.start)
    return found[:count]
