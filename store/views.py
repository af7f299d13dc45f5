"""What the coach views read, for any number of cities at once.

Each function is a fixed number of statements whatever the number of cities (one per figure, not one
per city), answered from the indexes on (city, time): the last update, the count since an instant and
the newest few per city are short index scans per city, never a pass over every update.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, func, select, true
from sqlalchemy.orm import aliased

from bot.calendar.program import Program, parse_program, program_from
from store.models import (
    Blocker,
    BlockerStatus,
    ChannelBinding,
    City,
    CoachCity,
    CoachingSession,
    Person,
    ProgramCalendar,
    Role,
    Update,
)
from store.repo import Store
from store.types import UTCDateTime

_CITY_TABLE, _COACHED_TABLE = City.__table__, CoachCity.__table__  # type: ignore[attr-defined]
CHUNK = 900  # ids in one IN list: under SQLite's old limit of 999 variables


@dataclass(frozen=True)
class CityFigures:
    last_update: datetime | None
    updates_since: int
    open_blockers: int


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A coaching session as the calendar functions read it, without the ORM's bookkeeping (a coach's
    status reads a thousand of them)."""

    id: int
    city_id: int
    title: str
    start_local: datetime
    duration_min: int
    rrule: str | None
    until_local: datetime | None
    exdates: list[str]


def _postgres(store: Store) -> bool:
    return store.session.get_bind().dialect.name == "postgresql"


def _chunks(store: Store, ids: Sequence[int]) -> list[list[int]]:
    ids = list(dict.fromkeys(ids))
    if _postgres(store):
        return [ids] if ids else []  # one array parameter, whatever its length
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _among(column: Any, postgres: bool) -> Any:
    """`column IN :ids`; on PostgreSQL `= ANY(:ids)`, one array parameter, where psycopg would spend
    longer spelling out a thousand parameters than the server spends answering."""
    if postgres:
        return column == any_(bindparam("ids", type_=ARRAY(Integer)))
    return column.in_(bindparam("ids", expanding=True))


def _run(store: Store, name: str, ids: Sequence[int], **params: Any) -> list[Any]:
    """Statement `name`, built once per dialect (building one costs more than running it), for
    `ids` in as few round trips as the dialect allows."""
    statement = _statement(name, _postgres(store))
    rows: list[Any] = []
    for chunk in _chunks(store, ids):
        rows += store.session.execute(statement, {"ids": chunk, **params}).all()
    return rows


@cache
def _statement(name: str, postgres: bool) -> Any:
    return _BUILDERS[name](postgres)


def _figures(postgres: bool) -> Any:
    # Each figure is a correlated lookup in the (city, time) indexes: a city's last update, its
    # updates since an instant and its open blockers are short index scans, whatever the history.
    u, b = aliased(Update), aliased(Blocker)
    last = select(func.max(u.created_at)).where(u.city_id == City.id).scalar_subquery()
    since = bindparam("since", type_=UTCDateTime())
    recent = select(func.count()).where(u.city_id == City.id, u.created_at >= since).scalar_subquery()
    blocked = (
        select(func.count()).where(b.city_id == City.id, b.status == BlockerStatus.open).scalar_subquery()
    )
    return select(City.id, last, recent, blocked).where(_among(City.id, postgres))


def _last_updates(postgres: bool) -> Any:
    u = aliased(Update)
    last = select(func.max(u.created_at)).where(u.city_id == City.id).scalar_subquery()
    return select(City.id, last).where(_among(City.id, postgres))


def _sessions(postgres: bool) -> Any:
    table = CoachingSession.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in SessionRow.__slots__]  # type: ignore[attr-defined]
    return select(*columns).where(_among(table.c.city_id, postgres)).order_by(table.c.start_local)


def _first_per_city(model: Any, where: Callable[[Any], list[Any]], order: Callable[[Any], list[Any]]) -> Any:
    """Builds the ids of each city's first `:count` rows of `model` in `order`: a short scan of the
    city's index per city (PostgreSQL: LATERAL; SQLite, which has none: a correlated IN), so only the
    rows shown are read, however many a city has."""

    def build(postgres: bool) -> Any:
        inner = aliased(model)
        first = (
            select(inner.id)
            .where(inner.city_id == City.id, *where(inner))
            .order_by(*order(inner))
            .limit(bindparam("count", type_=Integer()))
        )
        if postgres:
            lateral = first.lateral()
            query = select(lateral.c.id).select_from(City).join(lateral, true())
        else:
            outer = aliased(model)
            query = select(outer.id).select_from(City).join(outer, outer.id.in_(first.correlate(City)))
        return query.where(_among(City.id, postgres))

    return build


def _rows_of(model: Any) -> Any:
    return lambda postgres: select(model).where(_among(model.id, postgres))


def _latest_updates(postgres: bool) -> Any:
    u, v = aliased(Update), aliased(Update)
    newest = (
        select(u.id)
        .where(u.city_id == City.id)
        .order_by(u.created_at.desc(), u.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(City.id, v.id, v.created_at)
        .select_from(City)
        .outerjoin(v, v.id == newest)
        .where(_among(City.id, postgres))
    )


def _open_blockers(postgres: bool) -> Any:
    return (
        select(Blocker.id, Blocker.city_id, Blocker.opened_at)
        .where(_among(Blocker.city_id, postgres), Blocker.status == BlockerStatus.open)
        .order_by(Blocker.opened_at, Blocker.id)
    )


def _bindings(postgres: bool) -> Any:
    return (
        select(ChannelBinding.city_id, ChannelBinding.conversation)
        .where(_among(ChannelBinding.city_id, postgres))
        .order_by(ChannelBinding.conversation)
    )


def _members(postgres: bool) -> Any:
    return (
        select(Person.city_id, Person.identity, Person.stopped_at)
        .where(_among(Person.city_id, postgres), Person.role == Role.member)
        .order_by(Person.identity)
    )


def _coach_links(postgres: bool) -> Any:
    return select(CoachCity.city_id, CoachCity.person_id).where(_among(CoachCity.city_id, postgres))


def _coached(postgres: bool) -> Any:
    return select(CoachCity.person_id, CoachCity.city_id).where(_among(CoachCity.person_id, postgres))


_BUILDERS: dict[str, Callable[[bool], Any]] = {
    "update_rows": lambda postgres: select(Update.id, Update.city_id, Update.created_at, Update.text).where(
        _among(Update.id, postgres)
    ),
    "blocker_rows": lambda postgres: select(
        Blocker.id, Blocker.city_id, Blocker.opened_at, Blocker.text
    ).where(_among(Blocker.id, postgres)),
    "places": lambda postgres: select(City.id, City.name, City.zone).where(_among(City.id, postgres)),
    "blocker_texts": lambda postgres: select(Blocker.id, Blocker.text).where(_among(Blocker.id, postgres)),
    "names_and_zones": lambda postgres: select(City.id, City.name, City.zone).where(
        _among(City.id, postgres)
    ),
    "coaches_of": lambda postgres: (
        select(CoachCity.city_id, Person.identity)
        .join(Person, Person.id == CoachCity.person_id)
        .where(_among(CoachCity.city_id, postgres), Person.role == Role.coach)
    ),
    "latest_updates": _latest_updates,
    "open_blockers": _open_blockers,
    "bindings": _bindings,
    "members": _members,
    "coach_links": _coach_links,
    "coached": _coached,
    "people": lambda postgres: select(Person).where(_among(Person.id, postgres)),
    "figures": _figures,
    "last_updates": _last_updates,
    "sessions": _sessions,
    "newest_updates": _first_per_city(
        Update,
        lambda u: [u.created_at >= bindparam("since", type_=UTCDateTime())],
        lambda u: [u.created_at.desc(), u.id.desc()],
    ),
    "oldest_open_blockers": _first_per_city(
        Blocker, lambda b: [b.status == BlockerStatus.open], lambda b: [b.opened_at, b.id]
    ),
    "updates": _rows_of(Update),
    "blockers": _rows_of(Blocker),
    "cities": _rows_of(City),
}


def cities(store: Store, ids: Sequence[int]) -> list[City]:
    """The cities `ids`, by name."""
    found = [row[0] for row in _run(store, "cities", ids)]
    return sorted(found, key=lambda c: (c.name, c.id or 0))


_ALL_CITY_IDS = select(_CITY_TABLE.c.id)
_COACHED_IDS = select(_COACHED_TABLE.c.city_id).where(_COACHED_TABLE.c.person_id == bindparam("person"))


def accessible_city_ids(store: Store, person: Any) -> list[int]:
    """Every city a coach or an admin may see, in no order (ids only: a coach of all cities need not
    load them; whoever shows cities sorts them)."""
    # Core rows, not the ORM's: a coach of every city asks for a thousand ids with every message.
    if person.all_cities or person.role == Role.admin:
        return list(store.session.connection().execute(_ALL_CITY_IDS).scalars())
    return list(store.session.connection().execute(_COACHED_IDS, {"person": person.id}).scalars())


def city_figures(store: Store, city_ids: Sequence[int], since: datetime) -> dict[int, CityFigures]:
    """Per city: when the last update came, how many came since `since`, how many blockers are open;
    one statement for every city."""
    return {
        city_id: CityFigures(_utc(last_at), count, open_count)
        for city_id, last_at, count, open_count in _run(store, "figures", city_ids, since=since)
    }


def last_updates(store: Store, city_ids: Sequence[int]) -> dict[int, datetime | None]:
    """When each city last posted an update (None: never)."""
    return {city_id: _utc(last_at) for city_id, last_at in _run(store, "last_updates", city_ids)}


def sessions_by_city(store: Store, city_ids: Sequence[int]) -> dict[int, list[SessionRow]]:
    found: dict[int, list[SessionRow]] = defaultdict(list)
    for row in _run(store, "sessions", city_ids):
        found[row.city_id].append(SessionRow(*row))
    return found


@dataclass(frozen=True, slots=True)
class Posted:
    """An update or a blocker as a digest shows it: its number, its city, when, and what it says."""

    id: int
    city_id: int
    at: datetime
    text: str


def newest_updates(
    store: Store, city_ids: Sequence[int], since: datetime, per_city: int
) -> dict[int, list[Posted]]:
    """Each city's newest `per_city` updates since `since`, newest first."""
    ids = [row[0] for row in _run(store, "newest_updates", city_ids, since=since, count=per_city)]
    found: dict[int, list[Posted]] = defaultdict(list)
    for update_id, city_id, at, text in _run(store, "update_rows", ids):
        found[city_id].append(Posted(update_id, city_id, _utc(at), text))  # type: ignore[arg-type]
    for updates in found.values():
        updates.sort(key=lambda u: (u.at, u.id), reverse=True)
    return found


def oldest_open_blockers(store: Store, city_ids: Sequence[int], per_city: int) -> dict[int, list[Posted]]:
    """Each city's `per_city` oldest open blockers, oldest first."""
    ids = [row[0] for row in _run(store, "oldest_open_blockers", city_ids, count=per_city)]
    found: dict[int, list[Posted]] = defaultdict(list)
    for blocker_id, city_id, at, text in _run(store, "blocker_rows", ids):
        found[city_id].append(Posted(blocker_id, city_id, _utc(at), text))  # type: ignore[arg-type]
    for blockers in found.values():
        blockers.sort(key=lambda b: (b.at, b.id))
    return found


@dataclass(frozen=True, slots=True)
class Place:
    """A city as a digest names it."""

    id: int
    name: str
    zone: str


def places(store: Store, city_ids: Sequence[int]) -> list[Place]:
    """The cities `ids`, by name, as a digest names them (lighter than the whole rows)."""
    return sorted((Place(*row) for row in _run(store, "places", city_ids)), key=lambda p: (p.name, p.id))


def all_places(store: Store) -> list[Place]:
    query = select(City.id, City.name, City.zone).order_by(City.name, City.id)
    return [Place(*row) for row in store.session.execute(query)]


def program(store: Store) -> Program:
    """The program calendar in force. Loaded calendars are never changed, only added, so the parsed
    newest one is kept by its row id; a newer row is read and parsed the first time it is seen."""
    newest = store.session.execute(select(func.max(ProgramCalendar.id))).scalar()
    if newest is None:
        return program_from(None)
    return _parsed_program(store, newest)


_programs: dict[int, Program] = {}


def _parsed_program(store: Store, row_id: int) -> Program:
    parsed = _programs.get(row_id)
    if parsed is None:
        row = store.session.get(ProgramCalendar, row_id)
        assert row is not None
        parsed = parse_program(row.document)
        if len(_programs) >= 8:
            _programs.pop(next(iter(_programs)))
        _programs[row_id] = parsed
    return parsed


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class LatestUpdate:
    id: int
    created_at: datetime


def latest_updates(store: Store, city_ids: Sequence[int]) -> dict[int, LatestUpdate]:
    """Each city's newest update (by time, then id), for the cities that have one."""
    return {
        city_id: LatestUpdate(update_id, _utc(created_at))  # type: ignore[arg-type]
        for city_id, update_id, created_at in _run(store, "latest_updates", city_ids)
        if update_id is not None
    }


@dataclass(frozen=True)
class OpenBlocker:
    id: int
    city_id: int
    opened_at: datetime


def open_blockers(store: Store, city_ids: Sequence[int]) -> dict[int, list[OpenBlocker]]:
    """Each city's open blockers, oldest first (ids and times only)."""
    found: dict[int, list[OpenBlocker]] = defaultdict(list)
    for blocker_id, city_id, opened_at in _run(store, "open_blockers", city_ids):
        found[city_id].append(OpenBlocker(blocker_id, city_id, _utc(opened_at)))  # type: ignore[arg-type]
    return found


def blocker_texts(store: Store, ids: Sequence[int]) -> dict[int, str]:
    return dict(_run(store, "blocker_texts", ids))


@dataclass(frozen=True)
class Audience:
    """Who hears about a city: its bound channels, and its members (with when they said stop)."""

    channels: list[str]
    members: list[tuple[str, datetime | None]]


def audiences(store: Store, city_ids: Sequence[int]) -> dict[int, Audience]:
    found = {city_id: Audience([], []) for city_id in city_ids}
    for city_id, conversation in _run(store, "bindings", city_ids):
        found[city_id].channels.append(conversation)
    for city_id, identity, stopped_at in _run(store, "members", city_ids):
        found[city_id].members.append((identity, stopped_at))
    return found


def coaches_by_city(store: Store, city_ids: Sequence[int]) -> dict[int, list[str]]:
    """The identities of each city's coaches (those of all cities included), in order."""
    everywhere = set(
        store.session.execute(
            select(Person.identity).where(Person.role == Role.coach, Person.all_cities.is_(True))  # type: ignore[attr-defined]
        ).scalars()
    )
    linked: dict[int, set[str]] = defaultdict(set)
    for city_id, identity in _run(store, "coaches_of", city_ids):
        linked[city_id].add(identity)
    return {city_id: sorted(everywhere | linked.get(city_id, set())) for city_id in city_ids}


def people(store: Store, ids: Sequence[int]) -> list[Person]:
    return [person for (person,) in _run(store, "people", ids)]


def coached_cities(store: Store, person_ids: Sequence[int]) -> dict[int, list[int]]:
    """The cities each coach is linked to (a coach of all cities has none linked)."""
    found: dict[int, list[int]] = defaultdict(list)
    for person_id, city_id in _run(store, "coached", person_ids):
        found[person_id].append(city_id)
    return found


def all_cities(store: Store) -> list[City]:
    """Every city, by name."""
    return list(store.session.execute(select(City).order_by(City.name, City.id)).scalars())


def names_and_zones(store: Store, city_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
    """Each city's (name, id, zone): enough to find a coach's first city and its zone."""
    return {
        city_id: (name, city_id, zone) for city_id, name, zone in _run(store, "names_and_zones", city_ids)
    }


def first_city_zone(store: Store) -> str | None:
    """The zone of the first city by name (a coach of all cities without a zone of their own keeps it)."""
    return store.session.execute(select(City.zone).order_by(City.name, City.id).limit(1)).scalar()


_PEOPLE, _CITIES = Person.__table__, City.__table__  # type: ignore[attr-defined]
_PERSON_AND_CITY = (
    select(
        *(c.label(f"p_{c.name}") for c in _PEOPLE.c),
        *(c.label(f"c_{c.name}") for c in _CITIES.c),
    )
    .select_from(_PEOPLE.outerjoin(_CITIES, _CITIES.c.id == _PEOPLE.c.city_id))
    .where(_PEOPLE.c.identity == bindparam("who"))
)


def person_and_city(store: Store, identity: str) -> tuple[Person | None, City | None]:
    """Someone on the roster and their city (a member's), in one statement. Every message asks this
    first, so the rows are read without the ORM (whose work was most of the statement's) and given
    as detached objects: read them, never change them."""
    row = store.session.connection().execute(_PERSON_AND_CITY, {"who": identity}).mappings().first()
    if row is None:
        return None, None
    person = Person.model_construct(**{c.name: row[f"p_{c.name}"] for c in _PEOPLE.c})
    if row["c_id"] is None:
        return person, None
    return person, City.model_construct(**{c.name: row[f"c_{c.name}"] for c in _CITIES.c})
