"""City sessions to and from iCalendar (RFC 5545): time zones, RRULE, EXDATE, all-day events,
moved or cancelled occurrences (RECURRENCE-ID), and re-import by UID without duplicates. A file with one
bad event is refused whole, in one line naming the event and the field, by the rules `session add` keeps."""

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vRecur

from bot.calendar.sessions import (
    ALL_DAY_MINUTES,
    DEFAULT_TITLE,
    FIRST_YEAR,
    LAST_YEAR,
    Fields,
    SessionError,
    check_session,
    is_all_day,
    local_start,
    session_title,
    start_instant,
    stored_title,
)
from bot.core.i18n import translator
from store.models import City, CoachingSession
from store.repo import Store

PRODID = "-//City Data Alliance//cda-bot//EN"
DEFAULT_MINUTES = 60
PROPERTIES = Fields(start="DTSTART", end="DTEND", rule="RRULE", until="UNTIL")
# The properties an import reads: one icalendar could not parse, or whose zone it does not know, is an
# error in the file, never a guess.
READ = ("DTSTART", "DTEND", "DURATION", "RRULE", "EXDATE", "RECURRENCE-ID")


class IcsError(ValueError):
    """A calendar file that cannot be imported; nothing was changed."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    removed: int = 0
    skipped: int = 0
    absent: int = 0  # sessions an earlier import brought in that this file does not have, kept


def session_uid(city: City, session: CoachingSession) -> str:
    return session.uid or f"cda-{city.slug}-{session.id}@cda-bot"


def export_calendar(city: City, sessions: list[CoachingSession], now: datetime) -> bytes:
    """The city's sessions as iCalendar; a default title is written in the city's language, as its
    people see it in their calendar app (an import reads it back as the default)."""
    tz = ZoneInfo(city.zone)
    t = translator(city.language)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"{city.name} — coaching sessions")
    calendar.add("x-wr-timezone", city.zone)
    for session in sessions:
        event = Event()
        event.add("uid", session_uid(city, session))
        event.add("dtstamp", now)
        event.add("summary", session_title(session.title, t))
        all_day = is_all_day(session)
        if all_day:
            event.add("dtstart", session.start_local.date())
            event.add(
                "dtend", session.start_local.date() + timedelta(days=session.duration_min // ALL_DAY_MINUTES)
            )
        else:
            event.add("dtstart", session.start_local.replace(tzinfo=tz))
            event.add("duration", timedelta(minutes=session.duration_min))
        if session.rrule:
            rule = vRecur.from_ical(session.rrule)
            if session.until_local is not None:
                # RFC 5545: with a zoned DTSTART, UNTIL is given in UTC.
                until = (
                    session.until_local.date() if all_day else start_instant(session.until_local, city.zone)
                )
                rule["UNTIL"] = [until]
            event.add("rrule", rule)
        if session.exdates:
            excluded = [datetime.fromisoformat(d) for d in session.exdates]
            event.add("exdate", [d.date() if all_day else d.replace(tzinfo=tz) for d in excluded])
        calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical()


def _local(value: date | datetime, zone: str) -> datetime:
    """Wall-clock time in the city's zone; a floating time is taken as the city's own."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time())
    if value.tzinfo is None:
        return value.replace(microsecond=0)
    return value.astimezone(ZoneInfo(zone)).replace(tzinfo=None, microsecond=0)


def _minutes(event: Event, start: date | datetime, zone: str) -> int:
    """How long the event lasts in real time (an end across a clock change counts the hour it gained or
    lost); zero or less is left to the shared rules to refuse."""
    if "DTEND" in event:
        end = event.decoded("DTEND")
        if isinstance(start, datetime) != isinstance(end, datetime):
            kinds = ("a date-time", "a date") if isinstance(end, datetime) else ("a date", "a date-time")
            raise IcsError(f"{_label(event)}: DTEND: {kinds[0]} while DTSTART is {kinds[1]}")
        if isinstance(start, datetime):
            return int((_instant(end, zone) - _instant(start, zone)).total_seconds() // 60)
        return (end - start).days * ALL_DAY_MINUTES
    if "DURATION" in event:
        return int(event.decoded("DURATION").total_seconds() // 60)
    return DEFAULT_MINUTES if isinstance(start, datetime) else ALL_DAY_MINUTES


def _instant(value: datetime, zone: str) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else start_instant(value, zone)


def _rule(event: Event, zone: str) -> tuple[str | None, datetime | None]:
    value = event.get("RRULE")
    if value is None:
        return None, None
    rule = vRecur(value)  # one rule: `_check_readable` refused more
    until_values = rule.pop("UNTIL", None)
    until = None
    if until_values:
        raw = until_values[0]
        until = (
            datetime.combine(raw, time(23, 59, 59)) if not isinstance(raw, datetime) else _local(raw, zone)
        )
    return rule.to_ical().decode(), until


def _dates(event: Event, name: str, zone: str) -> list[datetime]:
    values = event.get(name)
    if values is None:
        return []
    found: list[datetime] = []
    for value in values if isinstance(values, list) else [values]:
        found += [_local(item.dt, zone) for item in value.dts]
    return found


def _label(event: Event) -> str:
    """How a refusal names an event: its UID and summary, whichever it has."""
    uid, summary = str(event.get("UID") or ""), str(event.get("SUMMARY") or "")
    if uid and summary:
        return f"event {uid} ({summary})"
    return f"event {uid or summary or 'without UID or SUMMARY'}"


def _check_readable(event: Event) -> None:
    """Refuse an event whose properties used here icalendar could not read, or read without a zone."""
    for name, problem in event.errors:
        if name in READ:
            raise IcsError(f"{_label(event)}: {name}: {problem}")
    for name in READ:
        found = event.get(name)
        for prop in found if isinstance(found, list) else [found]:
            tzid = getattr(prop, "params", {}).get("TZID")
            # icalendar leaves a time whose TZID it cannot resolve floating: it would read as city time.
            if tzid and any(isinstance(v.dt, datetime) and v.dt.tzinfo is None for v in prop.dts):
                raise IcsError(f"{_label(event)}: {name}: unknown time zone '{tzid}'")
    if isinstance(event.get("RRULE"), list):
        raise IcsError(f"{_label(event)}: RRULE: more than one rule; a session repeats by one")


def _uid(event: Event) -> str:
    uid = str(event.get("UID") or "")
    if uid:
        return uid[:255]
    # No UID: one made from what the event is keeps a re-import from adding it twice.
    seed = f"{event.get('SUMMARY')}|{event.get('DTSTART').to_ical().decode() if event.get('DTSTART') else ''}"
    return "cda-import-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def import_calendar(
    store: Store, city: City, data: bytes, now: datetime, replace_all: bool = False
) -> ImportReport:
    """Create or update the city's sessions from an ICS file, by UID. A moved occurrence of a series
    the file holds, no longer moved in it, is removed (the file says where that day is now). Other
    imported sessions the file does not have are counted in `absent` and kept: they may come from
    another calendar; `replace_all` removes them too (the file is the city's whole calendar). Sessions
    added with `session add` are never touched."""
    try:
        calendar = Calendar.from_ical(data)
    except ValueError as error:
        raise IcsError(f"not an iCalendar file ({error})") from None
    events = list(calendar.walk("VEVENT"))
    if not events and calendar.name != "VCALENDAR":
        raise IcsError("not an iCalendar file (no VCALENDAR)")
    for event in events:
        _check_readable(event)
    assert city.id is not None
    report = ImportReport()
    masters = [e for e in events if "RECURRENCE-ID" not in e]
    overrides = [e for e in events if "RECURRENCE-ID" in e]
    series = {_uid(event) for event in masters}
    seen = set(series)
    for event in masters:
        _import_event(store, city, event, _uid(event), now, report)
    for event in overrides:
        master_uid = _uid(event)
        original = _dates(event, "RECURRENCE-ID", city.zone)
        master = store.session_by_uid(city.id, master_uid)
        if master is not None and original:
            master.exdates = sorted({*master.exdates, *(d.isoformat() for d in original)})
            store.session.add(master)
        moved_uid = f"{master_uid}/{original[0].isoformat() if original else 'moved'}"[:255]
        seen.add(moved_uid)
        _import_event(store, city, event, moved_uid, now, report, one_off=True)
    store.session.flush()
    for session in store.sessions_of(city.id):
        if session.uid is None or session.uid in seen:
            continue
        master, moved, _ = session.uid.partition("/")
        if replace_all or (moved and master in series):
            store.session.delete(session)
            report.removed += 1
        else:
            report.absent += 1
    store.session.flush()
    return report


def _import_event(
    store: Store,
    city: City,
    event: Event,
    uid: str,
    now: datetime,
    report: ImportReport,
    one_off: bool = False,
) -> None:
    assert city.id is not None
    existing = store.session_by_uid(city.id, uid)
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        if existing is not None:
            store.session.delete(existing)
            report.removed += 1
        else:
            report.skipped += 1
        return
    if "DTSTART" not in event:
        raise IcsError(f"{_label(event)}: DTSTART: missing")
    start = event.decoded("DTSTART")
    try:
        fields: dict[str, Any] = {
            "title": stored_title(str(event.get("SUMMARY") or DEFAULT_TITLE)[:200]),
            "duration_min": _minutes(event, start, city.zone),
            "rrule": None,
            "until_local": None,
            "exdates": [],
        }
        if not one_off:
            fields["rrule"], fields["until_local"] = _rule(event, city.zone)
            fields["exdates"] = sorted({d.isoformat() for d in _dates(event, "EXDATE", city.zone)})
    except OverflowError:  # a date at datetime's ends, moved into the city's zone
        raise IcsError(
            f"{_label(event)}: a date is out of range: give dates from {FIRST_YEAR} to {LAST_YEAR}"
        ) from None
    try:
        # An all-day event is a day, whatever the clocks do at its midnight.
        fields["start_local"] = (
            local_start(start.replace(microsecond=0), city.zone, "DTSTART")
            if isinstance(start, datetime)
            else datetime.combine(start, time())
        )
        check_session(
            fields["start_local"],
            fields["duration_min"],
            fields["rrule"],
            fields["until_local"],
            replace(PROPERTIES, end="DTEND" if "DTEND" in event else "DURATION"),
        )
    except SessionError as error:
        raise IcsError(f"{_label(event)}: {error}") from None
    if existing is None:
        store.add_session(CoachingSession(city_id=city.id, uid=uid, created_at=now, **fields))
        report.created += 1
        return
    for name, value in fields.items():
        setattr(existing, name, value)
    store.session.add(existing)
    report.updated += 1
