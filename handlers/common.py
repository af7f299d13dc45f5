"""Small pieces several handlers share: names for identities, a city's state at a glance."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.program import program_from
from bot.sessions import Occurrence, upcoming
from bot.timefmt import format_date, format_instant, format_time, relative_days
from store.models import City
from store.repo import Store


def display_names(store: Store, identities: Iterable[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for identity in set(identities):
        person = store.person(identity)
        names[identity] = person.name if person and person.name else identity
    return names


def city_names(cities: Iterable[City]) -> str:
    return ", ".join(c.name for c in cities)


def when(instant: datetime, city: City, now: datetime) -> str:
    """`Tue 1 Dec 2026, 10:00 CST (in 3 days)`."""
    return f"{format_instant(instant, city.zone)} ({relative_days(instant, now, city.zone)})"


def day_of(instant: datetime, city: City) -> str:
    return format_date(instant.astimezone(ZoneInfo(city.zone)).date())


def session_line(occurrence: Occurrence, city: City, now: datetime) -> str:
    local = occurrence.local_start(city.zone)
    end = occurrence.end.astimezone(ZoneInfo(city.zone))
    return (
        f"{occurrence.title}: {format_date(local.date())}, {local:%H:%M}–{format_time(end)} "
        f"({relative_days(occurrence.start, now, city.zone)})"
    )


@dataclass
class CityState:
    city: City
    phase: str
    last_update: datetime | None
    updates_7d: int
    open_blockers: int
    next_session: Occurrence | None


def city_state(store: Store, city: City, now: datetime) -> CityState:
    assert city.id is not None
    program = program_from(store.program_document())
    today = now.astimezone(ZoneInfo(city.zone)).date()
    last = store.last_update(city.id)
    sessions = upcoming(store.sessions_of(city.id), city.zone, now, count=1)
    return CityState(
        city=city,
        phase=program.phase_label(today, city.pathway),
        last_update=last.created_at if last else None,
        updates_7d=store.count_updates(city.id, now - timedelta(days=7)),
        open_blockers=store.count_open_blockers(city.id),
        next_session=sessions[0] if sessions else None,
    )


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {many or word + 's'}"
