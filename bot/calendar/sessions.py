"""When a city's coaching sessions happen: one-off and recurring (RRULE) in the city's zone, and the
rules every stored session keeps, whether `session add` or a calendar file made it."""

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from bot.core.i18n import LANGUAGES, N_, Translator, translator

ALL_DAY_MINUTES = 24 * 60
# The years a session's dates may fall in, well inside datetime's: every instant, end and day computed
# from them, in any zone, stays one (a start in year 9999 made lists, exports and every scheduler pass
# raise OverflowError); and a session lasts a year at most, so its end stays in range too.
FIRST_YEAR, LAST_YEAR = 1900, 2999
LONGEST_MINUTES = 366 * ALL_DAY_MINUTES
MOST_INTERVAL = 1000  # a rule's step stays inside those years' reach
MOST_COUNT = 2**31 - 1  # RFC 5545's integers
SUB_DAILY = {"SECONDLY", "MINUTELY", "HOURLY"}
SUB_DAILY_PARTS = ("BYHOUR", "BYMINUTE", "BYSECOND")  # more than one value: several starts a day
# Stored as the title of a session nobody named (the column's default since the first migration), and
# shown in the city's language wherever a title is shown.
DEFAULT_TITLE = N_("Coaching session")


class SessionLike(Protocol):
    """What the calendar reads of a session: a stored `CoachingSession`, or a lighter row of one."""

    @property
    def id(self) -> int | None: ...
    @property
    def title(self) -> str: ...
    @property
    def start_local(self) -> datetime: ...
    @property
    def duration_min(self) -> int: ...
    @property
    def rrule(self) -> str | None: ...
    @property
    def until_local(self) -> datetime | None: ...
    @property
    def exdates(self) -> list[str]: ...


@dataclass(frozen=True)
class Occurrence:
    session_id: int
    title: str  # as stored: show it with `session_title`
    start: datetime  # aware, UTC
    end: datetime
    all_day: bool = False
    # The wall-clock start the series gave, which a daylight-saving gap moves away from `start`;
    # exceptions (EXDATE, `session skip`) are keyed by it.
    wall: datetime | None = None

    def local_start(self, zone: str) -> datetime:
        return self.start.astimezone(ZoneInfo(zone))


def session_title(title: str, t: Translator) -> str:
    return t.gettext(DEFAULT_TITLE) if title == DEFAULT_TITLE else title


def stored_title(title: str) -> str:
    """The default title in any language (our own export read back) is stored as the default."""
    return (
        DEFAULT_TITLE if title in {translator(code).gettext(DEFAULT_TITLE) for code in LANGUAGES} else title
    )


class SessionError(ValueError):
    """A session that cannot be stored, in one line that names the field."""


@dataclass(frozen=True)
class Fields:
    """The fields as the caller calls them: the CLI's options, an iCalendar file's properties."""

    start: str
    end: str
    rule: str
    until: str


def start_instant(local: datetime, zone: str) -> datetime:
    """The one way a local wall-clock start becomes an instant (UTC); answers, reminders, lists and
    exports all go through it. A time that occurs twice (clocks going back) is its first occurrence
    (fold=0), as RFC 5545 reads a zoned DATE-TIME. A time that does not exist (clocks going forward) is
    refused as a session's own start, but a recurring series can land in one: RFC 5545 (3.3.10) reads it
    "using the UTC offset before the gap", so a weekly 02:30 is 03:30 on the night the clocks skip 02:00
    to 03:00, which is also what a calendar app shows for our export. zoneinfo's fold=0 does just that."""
    return local.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)


def _exists(wall: datetime, tz: tzinfo) -> bool:
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def _next_valid(wall: datetime, tz: tzinfo) -> datetime:
    """The first wall-clock minute after a gap (gaps are whole minutes, an hour or a day at most)."""
    later = wall.replace(second=0, microsecond=0)
    while not _exists(later, tz):
        later += timedelta(minutes=1)
    return later


def local_start(value: datetime, zone: str, name: str) -> datetime:
    """A session's start as wall-clock time in the city's zone: a naive time is the city's own, an
    aware one (an offset, a calendar's TZID) is converted. Refused: a time the clocks skip, and an
    instant in the second pass of a repeated hour, which as wall time would read as the first, an hour
    earlier."""
    in_range(value, name)  # before any zone is applied to it
    tz = ZoneInfo(zone)
    given_tz = value.tzinfo or tz
    wall = value.replace(tzinfo=None)
    if not _exists(wall, given_tz):
        zone_name = getattr(given_tz, "key", None) or zone
        after = _next_valid(wall, given_tz)
        raise SessionError(
            f"{name} {wall:%Y-%m-%d %H:%M} does not exist in {zone_name} (the clocks skip it); "
            f"the next valid time is {after:%Y-%m-%d %H:%M}"
        )
    if value.tzinfo is None:
        return wall
    local = value.astimezone(tz).replace(tzinfo=None)
    # Compared in UTC: Python never finds aware times in a fold equal across zones (PEP 495).
    if start_instant(local, zone) != value.astimezone(UTC):
        raise SessionError(
            f"{name} {value.isoformat()} is the second {local:%H:%M} of {local:%Y-%m-%d} in {zone} "
            f"(the clocks go back); a session's local time means the first one"
        )
    return local


def in_years(year: int) -> bool:
    """Whether `year` is one a session's or the program's dates may fall in."""
    return FIRST_YEAR <= year <= LAST_YEAR


def in_range(value: datetime, name: str) -> None:
    if not in_years(value.year):
        raise SessionError(
            f"{name} {value.date().isoformat()} is out of range: give a date from {FIRST_YEAR} to {LAST_YEAR}"
        )


def check_session(
    start_local: datetime, duration_min: int, rule: str | None, until_local: datetime | None, names: Fields
) -> None:
    """What every stored session keeps to; `session add` and `calendar import` both ask here."""
    in_range(start_local, names.start)
    if duration_min <= 0:
        raise SessionError(f"{names.end} is not after {names.start}")
    if duration_min > LONGEST_MINUTES:
        raise SessionError(f"{names.end} is more than a year after {names.start}")
    if until_local is not None:
        in_range(until_local, names.until)
    if rule is None:
        if until_local is not None:
            raise SessionError(f"{names.until} goes with {names.rule}")
        return
    values = dict(part.partition("=")[::2] for part in rule.upper().replace(" ", "").split(";") if part)
    # dateutil reads these out of range too, and a zero or huge step, or a COUNT iCalendar cannot
    # write, then raised in every list, export and scheduler pass that met the session.
    for name, most in (("INTERVAL", MOST_INTERVAL), ("COUNT", MOST_COUNT)):
        if name in values and not (values[name].isdigit() and 1 <= int(values[name]) <= most):
            raise SessionError(f"bad {names.rule} '{rule}': {name} must be a whole number from 1 to {most}")
    # RFC 5545 (3.3.10): UNTIL and COUNT MUST NOT both occur. dateutil ends the series at whichever
    # comes first, which is seldom what whoever wrote both meant.
    if "COUNT" in values and (until_local is not None or "UNTIL" in values):
        until = names.until if until_local is not None else "UNTIL"
        raise SessionError(f"{names.rule} has COUNT and {until}: a series ends by one of them, not both")
    # A coaching session meets once a day at most. More often, a month of one session is thousands of
    # occurrences that every scheduler pass works through for every city (one SECONDLY session made a
    # pass take 15 s where 2 s is usual).
    if values.get("FREQ") in SUB_DAILY or any("," in values.get(part, "") for part in SUB_DAILY_PARTS):
        raise SessionError(f"bad {names.rule} '{rule}': a session repeats once a day at most")
    if until_local is None and not values.keys() & {"UNTIL", "COUNT"}:
        raise SessionError(f"a recurring session needs {names.until} (or COUNT= in {names.rule})")
    if until_local is not None and until_local < start_local:
        raise SessionError(f"{names.until} is before {names.start}")
    try:
        parse_rule(rule, start_local, until_local)
    except (ValueError, TypeError) as error:
        raise SessionError(f"bad {names.rule} '{rule}': {error}") from None


def is_all_day(session: SessionLike) -> bool:
    """All-day sessions (imported from calendars) start at midnight and last whole days."""
    start = session.start_local
    return start.hour == start.minute == 0 and session.duration_min % ALL_DAY_MINUTES == 0


def parse_rule(rule: str, start_local: datetime, until_local: datetime | None) -> rrule:
    """The recurrence of a session; raises ValueError for a rule dateutil cannot read."""
    return _parsed_rule(rule, start_local, until_local)


# dateutil walks a rule from its first occurrence every time it is asked for one; a cached rule keeps
# what it walked, so the next question about the same session (every city in a coach's status, every
# scheduler pass) starts from a list. Keyed by everything the rule is made of, so it cannot go stale.
# About 3 KB a weekly session kept: some 35 MB for the sessions of 10,000 cities, none while idle.
@lru_cache(maxsize=12_288)
def _parsed_rule(rule: str, start_local: datetime, until_local: datetime | None) -> rrule:
    parsed = rrulestr(rule, dtstart=start_local, ignoretz=True, cache=True)
    if not isinstance(parsed, rrule):
        raise ValueError("give one RRULE (no RDATE/EXRULE sets)")
    if until_local is not None:
        parsed = parsed.replace(until=until_local)
    return parsed


class _Series:
    """A rule's wall-clock starts in order, generated as far as anyone has asked and kept. The first
    start at or after an instant is then a binary search, where dateutil's `after` and `before` walk
    from the series' first start on every call (a pass asks for thousands of cities)."""

    def __init__(self, rule: rrule) -> None:
        self.starts: list[datetime] = []
        self._rest: Iterator[datetime] | None = iter(rule)
        self._lock = threading.Lock()  # one generator, shared by every thread that asks

    def _grow(self, past: datetime | None, size: int = 0) -> None:
        """Generate starts until there are `size` of them and the last is at or after `past`."""
        with self._lock:
            starts = self.starts
            while self._rest is not None and (
                len(starts) < size or (past is not None and (not starts or starts[-1] < past))
            ):
                following = next(self._rest, None)
                if following is None:
                    self._rest = None
                else:
                    starts.append(following)

    def index(self, local: datetime) -> int:
        """The position of the first start at or after `local` (the number of starts when none is)."""
        if self._rest is not None and (not self.starts or self.starts[-1] < local):
            self._grow(local)
        return bisect_left(self.starts, local)

    def at(self, position: int) -> datetime | None:
        if position >= len(self.starts) and self._rest is not None:
            self._grow(None, position + 1)
        return self.starts[position] if position < len(self.starts) else None


class _Steps:
    """A rule that only repeats every so many days or weeks (most sessions): its starts are counted,
    not generated, which dateutil does at some microseconds a start."""

    def __init__(self, first: datetime, step: timedelta, last: int | None) -> None:
        self.first = first
        self.step = step
        self.last = last  # the position of the last start; None: no end

    def index(self, local: datetime) -> int:
        """The position of the first start at or after `local` (the number of starts when none is)."""
        position = 0 if local <= self.first else -((self.first - local) // self.step)
        return position if self.last is None else min(position, self.last + 1)

    def at(self, position: int) -> datetime | None:
        if self.last is not None and position > self.last:
            return None
        return self.first + position * self.step


_STEPS = {"DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}
# Without any BY… part a daily or weekly rule repeats its first start (RFC 5545, 3.3.10); WKST only
# matters to BYDAY.
_PLAIN_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST"}


# Keyed like `_parsed_rule`, by everything the series is made of: it cannot go stale.
@lru_cache(maxsize=12_288)
def _series(rule: str, start_local: datetime, until_local: datetime | None) -> _Series | _Steps:
    parsed = parse_rule(rule, start_local, until_local)
    parts = dict(part.partition("=")[::2] for part in rule.upper().replace(" ", "").split(";") if part)
    if parts.keys() <= _PLAIN_PARTS and parts.get("FREQ") in _STEPS:
        # What dateutil made of the rule (it drops the start's microseconds, reads UNTIL and COUNT).
        try:
            first, interval = parsed._dtstart, parsed._interval
            count, until = parsed._count, parsed._until
        except AttributeError:  # a dateutil that keeps them elsewhere: generate the starts instead
            return _Series(parsed)
        step = _STEPS[parts["FREQ"]] * interval
        ends = [count - 1] if count is not None else []
        if until is not None:
            ends.append((until - first) // step if until >= first else -1)
        return _Steps(first, step, min(ends) if ends else None)
    return _Series(parsed)


def _local_starts(session: SessionLike, after_local: datetime) -> Iterator[datetime]:
    if not session.rrule:
        if session.start_local >= after_local:
            yield session.start_local
        return
    series = _series(session.rrule, session.start_local, session.until_local)
    excluded = {datetime.fromisoformat(d) for d in session.exdates}
    position = series.index(after_local)
    current = series.at(position)
    while current is not None:
        if current not in excluded:
            yield current
        position += 1
        current = series.at(position)


def _occurrences(session: SessionLike, zone: str, after: datetime) -> Iterator[Occurrence]:
    """Occurrences of one session starting after `after` (UTC), in order."""
    # A day of slack covers the gap between local and UTC; exact filtering follows.
    after_local = after.astimezone(ZoneInfo(zone)).replace(tzinfo=None) - timedelta(days=1)
    assert session.id is not None
    all_day = is_all_day(session)
    for local in _local_starts(session, after_local):
        start = start_instant(local, zone)
        if start > after:
            end = start + timedelta(minutes=session.duration_min)
            yield Occurrence(session.id, session.title, start, end, all_day, local)


def upcoming(sessions: Iterable[SessionLike], zone: str, now: datetime, count: int = 1) -> list[Occurrence]:
    """The next `count` sessions that start after `now`, soonest first."""
    found: list[Occurrence] = []
    for session in sessions:
        for taken, occurrence in enumerate(_occurrences(session, zone, now), start=1):
            found.append(occurrence)
            if taken >= count:
                break
    found.sort(key=lambda o: o.start)
    return found[:count]


def between(sessions: Iterable[SessionLike], zone: str, start: datetime, end: datetime) -> list[Occurrence]:
    """Every session starting in [start, end), soonest first."""
    found: list[Occurrence] = []
    for session in sessions:
        for occurrence in _occurrences(session, zone, start - timedelta(microseconds=1)):
            if occurrence.start >= end:
                break
            found.append(occurrence)
    found.sort(key=lambda o: o.start)
    return found


def last_before(sessions: Iterable[SessionLike], zone: str, instant: datetime) -> Occurrence | None:
    """The latest session that started before `instant`."""
    before_local = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    latest: Occurrence | None = None
    for session in sessions:
        assert session.id is not None
        if session.rrule:
            series = _series(session.rrule, session.start_local, session.until_local)
            excluded = {datetime.fromisoformat(d) for d in session.exdates}
            position = series.index(before_local) - 1
            local = series.at(position) if position >= 0 else None
            while local is not None and local in excluded:
                position -= 1
                local = series.at(position) if position >= 0 else None
        else:
            local = session.start_local if session.start_local < before_local else None
        if local is None:
            continue
        start = start_instant(local, zone)
        if start < instant and (latest is None or start > latest.start):
            end = start + timedelta(minutes=session.duration_min)
            latest = Occurrence(session.id, session.title, start, end, is_all_day(session), local)
    return latest
