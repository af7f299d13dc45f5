"""Small pieces several handlers share: names for identities, a city's state at a glance."""

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.calendar.sessions import Occurrence, session_title, upcoming
from bot.core.i18n import Translator, time_span
from store import views
from store.models import City
from store.repo import Store


class Zoned(Protocol):
    """A city as dates and times need it: a stored `City`, or a lighter row naming it."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def zone(self) -> str: ...


def display_names(store: Store, identities: Iterable[str]) -> dict[str, str]:
    """A person's name where the roster has one, else their identity."""
    wanted = set(identities)
    names = {p.identity: p.name for p in store.people(list(wanted)) if p.name}
    return {identity: names.get(identity, identity) for identity in wanted}


def says_nothing(text: str) -> bool:
    """Nothing but spaces and punctuation: `update: …`, the help hint's example copied as it is."""
    return all(c.isspace() or unicodedata.category(c).startswith("P") for c in text)


def city_names(cities: Iterable[City]) -> str:
    return ", ".join(c.name for c in cities)


def when(t: Translator, instant: datetime, city: Zoned, now: datetime) -> str:
    """`Tue 1 Dec 2026, 10:00 CST (in 3 days)`."""
    return f"{t.instant(instant, city.zone)} ({t.relative(instant, now, city.zone)})"


def day_of(t: Translator, instant: datetime, city: Zoned) -> str:
    return t.date(instant.astimezone(ZoneInfo(city.zone)).date())


def opened_by(t: Translator, opened_at: datetime, city: Zoned, now: datetime, who: str) -> str:
    """`opened Sat 28 Nov 2026 (3 days) by Gil`; a blocker opened within the day reads "(today)", not
    "(0 days)". Chat's blocker list and the coaches' page say it alike."""
    age = max((now - opened_at).days, 0)
    said = (
        t.gettext("opened {date} (today) by {who}")
        if age == 0
        else t.ngettext("opened {date} ({count} day) by {who}", "opened {date} ({count} days) by {who}", age)
    )
    return said.format(date=day_of(t, opened_at, city), count=t.number(age), who=who)


def session_line(t: Translator, occurrence: Occurrence, city: Zoned, now: datetime) -> str:
    """`Weekly coaching: Tue 1 Dec 2026, 10:00–11:00 CST (in 3 days)`."""
    local = occurrence.local_start(city.zone)
    end = occurrence.end.astimezone(ZoneInfo(city.zone))
    hours = t.gettext("all day") if occurrence.all_day else time_span(local, end)
    relative = t.relative(occurrence.start, now, city.zone)
    return f"{session_title(occurrence.title, t)}: {t.date(local.date())}, {hours} ({relative})"


@dataclass
class CityState:
    city: City
    phase: str
    last_update: datetime | None
    updates_7d: int
    open_blockers: int
    next_session: Occurrence | None
    failed: int = 0  # messages to the city that failed for good
    last_error: str | None = None  # the newest of those's error


def city_state(store: Store, city: City, now: datetime, language: str) -> CityState:
    return city_states(store, [city], now, language)[0]


def city_states(store: Store, cities: list[City], now: datetime, language: str) -> list[CityState]:
    """Every city's state in two statements, however many cities there are (the phase from the
    program calendar in force)."""
    ids = [city.id for city in cities if city.id is not None]
    figures, program = views.city_status(store, ids, now - timedelta(days=7))
    sessions = views.sessions_by_city(store, ids)
    states = []
    for city in cities:
        assert city.id is not None
        today = now.astimezone(ZoneInfo(city.zone)).date()
        figure = figures[city.id]
        nxt = upcoming(sessions.get(city.id, []), city.zone, now, count=1)
        states.append(
            CityState(
                city=city,
                phase=program.phase_label(today, city.pathway, language),
                last_update=figure.last_update,
                updates_7d=figure.updates_since,
                open_blockers=figure.open_blockers,
                next_session=nxt[0] if nxt else None,
                failed=figure.failed,
                last_error=figure.last_error,
            )
        )
    return states
