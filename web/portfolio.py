"""What the coaches' page shows, read through the store: the portfolio (one row per coached city, each
figure read for all of them at once) and a city's own page (timeline, open blockers, next sessions)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from bot.calendar.program import program_from
from bot.calendar.sessions import Occurrence, between, upcoming
from bot.core.i18n import unaccented
from handlers.common import display_names
from handlers.status import DEFAULT_QUIET_DAYS
from store import dashboard
from store.models import Blocker, BlockerStatus, City
from store.repo import Store

WEEKS = 12  # the momentum sparkline: updates per week over this many weeks
NEXT_SESSIONS = 5
DEFAULT_DAYS = 28  # how far back a city's timeline goes unless asked
MAX_DAYS = 366
NO_PHASE = "none"  # the phase filter's value for a city between phases, before or after the program
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    city: City
    phase_key: str
    phase: str
    weekly: list[int]  # oldest week first; the last is the seven days up to now
    last_update: datetime | None
    open_blockers: int
    oldest_blocker: datetime | None
    next_session: Occurrence | None
    quiet: bool

    @property
    def updates_7d(self) -> int:
        return self.weekly[-1] if self.weekly else 0

    @property
    def momentum(self) -> int:
        return sum(self.weekly)


@cache
def zone(key: str) -> ZoneInfo:
    """A zone held for the life of the process. zoneinfo keeps only the last few zones nobody holds, so a
    page of cities in a dozen zones would read each zone's file from disk again for every date it writes."""
    return ZoneInfo(key)


# The next session after an instant stays the next one until it starts: remembered per city's series
# (all their fields are the key, so an edit is a new key), a page of 1,000 cities does not walk 1,000
# recurrence rules on every load.
_next: dict[tuple[object, ...], tuple[datetime, Occurrence | None]] = {}
MAX_REMEMBERED = 20_000


def next_session(series: list[dashboard.Series], zone_key: str, now: datetime) -> Occurrence | None:
    key = (zone_key, *series)
    known = _next.get(key)
    # Valid from when it was worked out until that session starts; none left stays none.
    if known is not None and known[0] <= now and (known[1] is None or now < known[1].start):
        return known[1]
    found = upcoming([s.model() for s in series], zone_key, now, count=1)
    if len(_next) >= MAX_REMEMBERED:
        _next.clear()
    _next[key] = (now, found[0] if found else None)
    return _next[key][1]


def rows(
    store: Store, city_ids: Sequence[int] | None, now: datetime, language: str, archived: bool = False
) -> list[Row]:
    """One row per city in `city_ids` (None: every city) still in the program, or archived too when
    `archived`, by name: a handful of statements whatever the number of cities."""
    cities = dashboard.cities(store, city_ids, archived)
    if not cities:
        return []
    program = program_from(store.program_document())
    weekly = dashboard.weekly_updates(store, city_ids, now, WEEKS)
    last = dashboard.last_updates(store, city_ids)
    blockers = dashboard.open_blockers(store, city_ids)
    sessions = dashboard.series_by_city(store, city_ids)
    # The same line as `/cda quiet` and the digest draw: no update in seven days.
    quiet_since = now - timedelta(days=DEFAULT_QUIET_DAYS)
    found = []
    for city in cities:
        assert city.id is not None
        today = now.astimezone(zone(city.zone)).date()
        phase = program.phase_on(today, city.pathway)
        open_ = blockers.get(city.id)
        last_update = last.get(city.id)
        found.append(
            Row(
                city=city,
                phase_key=phase.key if phase is not None else NO_PHASE,
                phase=program.phase_label(today, city.pathway, language),
                weekly=weekly.get(city.id, [0] * WEEKS),
                last_update=last_update,
                open_blockers=open_.count if open_ else 0,
                oldest_blocker=open_.oldest if open_ else None,
                next_session=next_session(sessions.get(city.id, []), city.zone, now),
                quiet=last_update is None or last_update < quiet_since,
            )
        )
    return found


# -- sorting and filtering, from the query string ----------------------------------------------------

SORTS = ("name", "country", "pathway", "phase", "momentum", "last_update", "blockers", "next_session")


@dataclass(frozen=True)
class Filters:
    country: str | None = None
    pathway: str | None = None
    phase: str | None = None
    quiet: bool | None = None
    blockers: bool | None = None
    sort: str = "name"
    descending: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> "Filters":
        """What the query string asks; a value that is no choice is left out rather than refused, so an
        old bookmark still opens a page."""
        sort = (params.get("sort") or "name").strip()
        descending = sort.startswith("-")
        sort = sort.lstrip("-")
        if sort not in SORTS:
            sort, descending = "name", False
        return cls(
            country=(params.get("country") or "").strip().upper() or None,
            pathway=(params.get("pathway") or "").strip().lower() or None,
            phase=(params.get("phase") or "").strip() or None,
            quiet=_yes_no(params.get("quiet")),
            blockers=_yes_no(params.get("blockers")),
            sort=sort,
            descending=descending,
        )

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.country, self.pathway, self.phase, self.quiet, self.blockers))

    def params(self) -> dict[str, str]:
        shown = {
            "country": self.country,
            "pathway": self.pathway,
            "phase": self.phase,
            "quiet": None if self.quiet is None else ("yes" if self.quiet else "no"),
            "blockers": None if self.blockers is None else ("yes" if self.blockers else "no"),
            "sort": None if self.sort == "name" and not self.descending else self.sort_value,
        }
        return {k: v for k, v in shown.items() if v is not None}

    @property
    def sort_value(self) -> str:
        return f"-{self.sort}" if self.descending else self.sort

    def sorted_by(self, key: str) -> str:
        """The query string of this view sorted by `key`; asked again, the other way round."""
        descending = not self.descending if key == self.sort else False
        return "?" + urlencode(replace(self, sort=key, descending=descending).params())


def _yes_no(value: str | None) -> bool | None:
    value = (value or "").strip().lower()
    return True if value == "yes" else False if value == "no" else None


def name_key(name: str) -> tuple[str, str]:
    """How names sort, as a reader expects: accents aside (Ávila before Beta, not after Zaragoza, where a
    comparison of code points puts every accented capital), then as written, so the order is fixed."""
    return unaccented(name), name.casefold()


def chosen(all_rows: list[Row], filters: Filters) -> list[Row]:
    picked = [
        row
        for row in all_rows
        if (filters.country is None or (row.city.country or "").upper() == filters.country)
        and (filters.pathway is None or (row.city.pathway or "") == filters.pathway)
        and (filters.phase is None or row.phase_key == filters.phase)
        and (filters.quiet is None or row.quiet == filters.quiet)
        and (filters.blockers is None or (row.open_blockers > 0) == filters.blockers)
    ]
    keys = {
        "name": lambda r: name_key(r.city.name),
        "country": lambda r: ((r.city.country or "").upper(),),
        "pathway": lambda r: (r.city.pathway or "",),
        "phase": lambda r: (r.phase,),
        "momentum": lambda r: (r.momentum, r.updates_7d),
        "last_update": lambda r: (r.last_update or EARLIEST,),
        # More blockers first when descending; among equals, the one whose oldest waited longest.
        "blockers": lambda r: (r.open_blockers, -(r.oldest_blocker or LATEST).timestamp()),
        "next_session": lambda r: (r.next_session.start if r.next_session else LATEST,),
    }
    key = keys[filters.sort]
    picked.sort(key=lambda r: name_key(r.city.name))  # the tie-break, kept by the stable sort below
    picked.sort(key=key, reverse=filters.descending)
    return picked


@dataclass(frozen=True)
class Totals:
    cities: int
    quiet: int
    open_blockers: int
    cities_with_blockers: int
    updates_7d: int


def totals(shown: list[Row]) -> Totals:
    return Totals(
        cities=len(shown),
        quiet=sum(r.quiet for r in shown),
        open_blockers=sum(r.open_blockers for r in shown),
        cities_with_blockers=sum(r.open_blockers > 0 for r in shown),
        updates_7d=sum(r.updates_7d for r in shown),
    )


# -- a city's page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One line of a city's timeline."""

    at: datetime
    kind: str  # update · blocker_opened · blocker_resolved · session
    number: int | None
    text: str
    who: str | None = None
    end: datetime | None = None  # a session's end


@dataclass(frozen=True)
class CityView:
    row: Row
    open_blockers: list[Blocker]
    next_sessions: list[Occurrence]
    timeline: list[Event]  # newest first
    days: int
    names: dict[str, str]  # identity → name, for everyone the page names


def days_param(value: str | None) -> int:
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit():
        return DEFAULT_DAYS
    return max(1, min(int(text[:4]), MAX_DAYS))


def city_view(store: Store, city_id: int, now: datetime, language: str, days: int) -> CityView | None:
    # Named, an archived city is shown as before: only "all my cities" leave it out.
    found = rows(store, [city_id], now, language, archived=True)
    if not found:
        return None
    row = found[0]
    since = now - timedelta(days=days)
    events: list[Event] = [
        Event(u.created_at, "update", u.id, u.text, u.author)
        for u in dashboard.updates_between(store, city_id, since, now)
    ]
    for b in dashboard.blockers_touched(store, city_id, since):
        if since <= b.opened_at <= now:
            events.append(Event(b.opened_at, "blocker_opened", b.id, b.text, b.author))
        if b.status == BlockerStatus.resolved and b.resolved_at is not None and since <= b.resolved_at <= now:
            events.append(
                Event(b.resolved_at, "blocker_resolved", b.id, b.resolution_note or "", b.resolved_by)
            )
    sessions = store.sessions_of(city_id)
    for occurrence in between(sessions, row.city.zone, since, now):
        events.append(Event(occurrence.start, "session", None, occurrence.title, None, occurrence.end))
    events.sort(key=lambda e: e.at, reverse=True)
    open_blockers = store.blockers([city_id])
    people = {e.who for e in events if e.who} | {b.author for b in open_blockers}
    return CityView(
        row=row,
        open_blockers=open_blockers,
        next_sessions=upcoming(sessions, row.city.zone, now, count=NEXT_SESSIONS),
        timeline=events,
        days=days,
        names=display_names(store, people),
    )
