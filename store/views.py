"""What the coach views read, for any number of cities at once.

Each function is a fixed number of statements whatever the number of cities (one per figure, not one
per city), answered from the indexes on (city, time): the last update, the count since an instant and
the newest few per city are short index scans per city, never a pass over every update.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Integer, String, any_, bindparam, case, cast, func, null, or_, select, true
from sqlalchemy.orm import aliased

from bot.calendar.program import Program, parse_program, program_from
from store.models import (
    IN_PROGRAM,
    Blocker,
    BlockerStatus,
    ChannelBinding,
    City,
    CoachCity,
    CoachingSession,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProgramCalendar,
    Role,
    Update,
)
from store.repo import Store
from store.types import UTCDateTime

_CITY_TABLE, _COACHED_TABLE = City.__table__, CoachCity.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CityFigures:
    last_update: datetime | None
    updates_since: int
    open_blockers: int
    failed: int = 0  # messages to the city that failed for good (read for a status only)
    last_error: str | None = None  # the newest of those's error


@dataclass(frozen=True, slots=True)
class ListedBlocker:
    """A blocker as a listing shows it, with its author's name on the roster (None: not on it)."""

    id: int
    city_id: int
    author: str
    text: str
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    name: str | None


@dataclass(frozen=True, slots=True)
class ListedUpdate:
    """An update as a listing shows it, with its author's name on the roster (None: not on it)."""

    id: int
    city_id: int
    author: str
    text: str
    created_at: datetime
    name: str | None


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


def series_key(sessions: Sequence[SessionRow]) -> tuple[Any, ...]:
    """What decides when a city's sessions fall, whatever their ids: cities with the same key (and
    zone) have the same sessions at the same moments, so what follows from them is worked out once."""
    return tuple(
        (s.title, s.start_local, s.duration_min, s.rrule, s.until_local, tuple(s.exdates)) for s in sessions
    )


def _postgres(store: Store) -> bool:
    return store.session.get_bind().dialect.name == "postgresql"


@dataclass(frozen=True)
class _Form:
    """How a statement is built: for which dialect, and for one id or for many."""

    postgres: bool
    single: bool = False


def in_json_list(column: Any, listed: Any) -> Any:
    """`column IN` the values of `listed`, a JSON list bound as one text parameter (SQLite's
    `json_each`): the statement is the same whatever the list's length, so it is compiled once."""
    return column.in_(select(func.json_each(listed).table_valued("value").c.value))


def _among(column: Any, form: _Form) -> Any:
    """`column IN :ids`, one parameter whatever the number of ids: on PostgreSQL `= ANY(:ids)`, an array,
    where psycopg would spend longer spelling out a thousand parameters than the server spends
    answering; on SQLite a JSON list read by `json_each`, so the statement is compiled once, where an
    IN list is written out afresh for every call (and was cut at SQLite's old 999). One id (a city's own
    view, the commonest) is `column = :ids`: PostgreSQL plans `= ANY(array)` afresh at every call,
    never trusting a prepared plan for an array of unknown length, and planning cost more than
    answering; for `= :ids` it keeps the prepared plan."""
    if form.single:
        return column == bindparam("ids")
    if form.postgres:
        return column == any_(bindparam("ids", type_=ARRAY(Integer)))
    return in_json_list(column, bindparam("ids", type_=String()))


def _run(store: Store, name: str, ids: Sequence[int], **params: Any) -> list[Any]:
    """Statement `name`, built once per dialect (building one costs more than running it), for
    `ids` in one round trip."""
    ids = list(dict.fromkeys(ids))
    postgres = _postgres(store)
    if len(ids) == 1:
        return store.session.execute(
            _statement(name, _Form(postgres, single=True)), {"ids": ids[0], **params}
        ).all()
    if not ids:
        return []
    listed = ids if postgres else json.dumps(ids)
    return store.session.execute(_statement(name, _Form(postgres)), {"ids": listed, **params}).all()


@cache
def _statement(name: str, form: _Form) -> Any:
    return _BUILDERS[name](form)


def _figures(form: _Form) -> Any:
    # Each figure is a correlated lookup in the (city, time) indexes: a city's last update, its
    # updates since an instant and its open blockers are short index scans, whatever the history.
    u, b = aliased(Update), aliased(Blocker)
    last = select(func.max(u.created_at)).where(u.city_id == City.id).scalar_subquery()
    since = bindparam("since", type_=UTCDateTime())
    recent = select(func.count()).where(u.city_id == City.id, u.created_at >= since).scalar_subquery()
    blocked = (
        select(func.count()).where(b.city_id == City.id, b.status == BlockerStatus.open).scalar_subquery()
    )
    return select(City.id, last, recent, blocked).where(_among(City.id, form))


def _status(form: _Form) -> Any:
    # The figures, and in the same statement what a status adds to them: each city's failed
    # deliveries (a short scan of the outbox's (city, status) index; nearly always none) with the
    # newest one's error, and which program calendar is in force (the same for every row).
    o = aliased(OutboxMessage)
    failed = (o.city_id == City.id, o.status == OutboxStatus.failed)
    count = select(func.count()).where(*failed).scalar_subquery()
    error = select(o.last_error).where(*failed).order_by(o.id.desc()).limit(1).scalar_subquery()
    calendar = select(func.max(ProgramCalendar.id)).scalar_subquery()
    return _figures(form).add_columns(count, error, calendar)


def _name_of(author: Any) -> Any:
    """The author's name on the roster, read with the rows: one statement where the rows and then the
    names took two. A lookup per row in the unique index on identity, not a join, which PostgreSQL
    would answer by hashing the whole roster for a page of twenty-five rows."""
    return select(Person.name).where(Person.identity == author).scalar_subquery()


def _listed_blockers(open_only: bool) -> Callable[[_Form], Any]:
    def build(form: _Form) -> Any:
        b = Blocker
        query = (
            select(
                b.id, b.city_id, b.author, b.text, b.status, b.opened_at, b.resolved_at, _name_of(b.author)
            )
            .where(_among(Blocker.city_id, form))
            .order_by(Blocker.opened_at, Blocker.id)
        )
        return query.where(Blocker.status == BlockerStatus.open) if open_only else query

    return build


def _listed_updates(form: _Form) -> Any:
    newest = (
        select(Update.id, Update.city_id, Update.author, Update.text, Update.created_at)
        .where(_among(Update.city_id, form), Update.created_at >= bindparam("since", type_=UTCDateTime()))
        .order_by(Update.created_at.desc(), Update.id.desc())
        .limit(bindparam("count", type_=Integer()))
        .subquery()
    )
    # Names looked up for the rows kept only: SQLite, sorting many cities' updates, would look one
    # up for every row it sorts.
    return select(*newest.c, _name_of(newest.c.author)).order_by(
        newest.c.created_at.desc(), newest.c.id.desc()
    )


def _last_updates(form: _Form) -> Any:
    u = aliased(Update)
    last = select(func.max(u.created_at)).where(u.city_id == City.id).scalar_subquery()
    return select(City.id, last).where(_among(City.id, form))


def _sessions(form: _Form) -> Any:
    table = CoachingSession.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in SessionRow.__slots__]  # type: ignore[attr-defined]
    return select(*columns).where(_among(table.c.city_id, form)).order_by(table.c.start_local)


def _first_per_city(model: Any, where: Callable[[Any], list[Any]], order: Callable[[Any], list[Any]]) -> Any:
    """Builds the ids of each city's first `:count` rows of `model` in `order`: a short scan of the
    city's index per city (PostgreSQL: LATERAL; SQLite, which has none: a correlated IN), so only the
    rows shown are read, however many a city has."""

    def build(form: _Form) -> Any:
        inner = aliased(model)
        first = (
            select(inner.id)
            .where(inner.city_id == City.id, *where(inner))
            .order_by(*order(inner))
            .limit(bindparam("count", type_=Integer()))
        )
        if form.postgres:
            lateral = first.lateral()
            query = select(lateral.c.id).select_from(City).join(lateral, true())
        else:
            outer = aliased(model)
            query = select(outer.id).select_from(City).join(outer, outer.id.in_(first.correlate(City)))
        return query.where(_among(City.id, form))

    return build


def _rows_of(model: Any) -> Any:
    return lambda form: select(model).where(_among(model.id, form))


def _latest_updates(form: _Form) -> Any:
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
        .where(_among(City.id, form))
    )


def _open_blockers(form: _Form) -> Any:
    return (
        select(Blocker.id, Blocker.city_id, Blocker.opened_at)
        .where(_among(Blocker.city_id, form), Blocker.status == BlockerStatus.open)
        .order_by(Blocker.opened_at, Blocker.id)
    )


def _bindings(form: _Form) -> Any:
    return (
        select(ChannelBinding.city_id, ChannelBinding.conversation)
        .where(_among(ChannelBinding.city_id, form))
        .order_by(ChannelBinding.conversation)
    )


def _members(form: _Form) -> Any:
    return (
        select(Person.city_id, Person.identity, Person.stopped_at)
        .where(_among(Person.city_id, form), Person.role == Role.member)
        .order_by(Person.identity)
    )


def _coach_links(form: _Form) -> Any:
    return select(CoachCity.city_id, CoachCity.person_id).where(_among(CoachCity.city_id, form))


def _coached(form: _Form) -> Any:
    return select(CoachCity.person_id, CoachCity.city_id).where(_among(CoachCity.person_id, form))


_BUILDERS: dict[str, Callable[[_Form], Any]] = {
    "update_rows": lambda form: select(Update.id, Update.city_id, Update.created_at, Update.text).where(
        _among(Update.id, form)
    ),
    "blocker_rows": lambda form: select(Blocker.id, Blocker.city_id, Blocker.opened_at, Blocker.text).where(
        _among(Blocker.id, form)
    ),
    "places": lambda form: select(City.id, City.name, City.zone).where(_among(City.id, form), IN_PROGRAM),
    "blocker_texts": lambda form: select(Blocker.id, Blocker.text).where(_among(Blocker.id, form)),
    "names_and_zones": lambda form: select(City.id, City.name, City.zone).where(_among(City.id, form)),
    "coaches_of": lambda form: (
        select(CoachCity.city_id, Person.identity)
        .join(Person, Person.id == CoachCity.person_id)
        .where(_among(CoachCity.city_id, form), Person.role == Role.coach)
    ),
    "latest_updates": _latest_updates,
    "open_blockers": _open_blockers,
    "bindings": _bindings,
    "members": _members,
    "coach_links": _coach_links,
    "coached": _coached,
    "people": lambda form: select(Person).where(_among(Person.id, form)),
    "figures": _figures,
    "status": _status,
    "open_blocker_list": _listed_blockers(open_only=True),
    "blocker_list": _listed_blockers(open_only=False),
    "update_list": _listed_updates,
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


def city_figures(store: Store, city_ids: Sequence[int], since: datetime) -> dict[int, CityFigures]:
    """Per city: when the last update came, how many came since `since`, how many blockers are open;
    one statement for every city."""
    return {
        city_id: CityFigures(_utc(last_at), count, open_count)
        for city_id, last_at, count, open_count in _run(store, "figures", city_ids, since=since)
    }


def city_status(
    store: Store, city_ids: Sequence[int], since: datetime
) -> tuple[dict[int, CityFigures], Program]:
    """`city_figures` with each city's failed deliveries, and the program calendar in force: all a
    status reads but the sessions, in one statement."""
    rows = _run(store, "status", city_ids, since=since)
    figures = {
        city_id: CityFigures(_utc(last_at), count, open_count, failed, error)
        for city_id, last_at, count, open_count, failed, error, _calendar in rows
    }
    return figures, (_program_of(store, rows[0][-1]) if rows else program(store))


def listed_blockers(store: Store, city_ids: Sequence[int], include_resolved: bool) -> list[ListedBlocker]:
    """The cities' blockers (open ones only unless `include_resolved`), oldest first."""
    name = "blocker_list" if include_resolved else "open_blocker_list"
    return [ListedBlocker(*row) for row in _run(store, name, city_ids)]


def listed_updates(store: Store, city_ids: Sequence[int], since: datetime, limit: int) -> list[ListedUpdate]:
    """The cities' newest `limit` updates since `since`, newest first."""
    return [ListedUpdate(*row) for row in _run(store, "update_list", city_ids, since=since, count=limit)]


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
    """The cities `ids` still in the program, by name, as a digest names them (lighter than the whole
    rows)."""
    return sorted((Place(*row) for row in _run(store, "places", city_ids)), key=lambda p: (p.name, p.id))


def all_places(store: Store) -> list[Place]:
    """Every city still in the program, as `places`."""
    query = select(City.id, City.name, City.zone).where(IN_PROGRAM)
    query = query.order_by(City.name, City.id)
    return [Place(*row) for row in store.session.execute(query)]


def program(store: Store) -> Program:
    """The program calendar in force. Loaded calendars are never changed, only added, so the parsed
    newest one is kept by its row id; a newer row is read and parsed the first time it is seen."""
    return _program_of(store, store.session.execute(select(func.max(ProgramCalendar.id))).scalar())


def _program_of(store: Store, row_id: int | None) -> Program:
    """The program of calendar row `row_id` (None: no calendar loaded)."""
    return _bundled_program() if row_id is None else _parsed_program(store, row_id)


@cache
def _bundled_program() -> Program:
    # The calendar shipped with the bot never changes while it runs: parsed once, not per status.
    return program_from(None)


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


_PEOPLE, _CITIES, _BINDINGS = Person.__table__, City.__table__, ChannelBinding.__table__  # type: ignore[attr-defined]


def _id_list(column: Any, postgres: bool) -> Any:
    # All of a column's ids as one value, not one row each: reading a thousand rows cost several
    # times what the statement did. PostgreSQL gives an array; SQLite, which has none, a text.
    return func.array_agg(column) if postgres else func.group_concat(column)


def _as_ids(value: list[int] | str | None) -> list[int]:
    if value is None:
        return []
    return list(map(int, value.split(","))) if isinstance(value, str) else list(value)


@cache
def _accessible(postgres: bool) -> Any:
    """The ids of every city a person may see, as one value: none for a member (a member sees their
    own city, which the dispatcher has already)."""
    person = _PEOPLE.c
    every = _CITY_TABLE.alias("every_city")  # not the member's city the statement joins
    everything = select(_id_list(every.c.id, postgres)).scalar_subquery()
    coached = (
        select(_id_list(_COACHED_TABLE.c.city_id, postgres))
        .where(_COACHED_TABLE.c.person_id == person.id)
        .scalar_subquery()
    )
    return case(
        (person.role == Role.member, null()),
        (or_(person.all_cities, person.role == Role.admin), everything),
        else_=coached,
    )


@cache
def _whereabouts(postgres: bool) -> Any:
    # One row whoever asks: the sender and the conversation are the statement's own one-row table,
    # and the person, their city and the conversation's city hang off it by outer joins.
    asked = select(
        cast(bindparam("who"), String).label("who"),
        cast(bindparam("conversation"), String).label("conversation"),
    ).subquery("asked")
    return _whereabouts_of_asked(asked, postgres)


@cache
def _whereabouts_many(postgres: bool) -> Any:
    # The same for a list of (sender, conversation), bound as one parameter whatever its length (so the
    # statement is compiled and prepared once): arrays unnested on PostgreSQL, a JSON list on SQLite.
    if postgres:
        pairs = (
            func.unnest(bindparam("who", type_=ARRAY(String)), bindparam("conversation", type_=ARRAY(String)))
            .table_valued("who", "conversation", with_ordinality="n")
            .render_derived("pairs")
        )
        asked = select(pairs.c.n, pairs.c.who, pairs.c.conversation).subquery("asked")
    else:
        listed = func.json_each(bindparam("asked")).table_valued("key", "value")
        asked = select(
            listed.c.key.label("n"),
            func.json_extract(listed.c.value, "$[0]").label("who"),
            func.json_extract(listed.c.value, "$[1]").label("conversation"),
        ).subquery("asked")
    return _whereabouts_of_asked(asked, postgres).add_columns(asked.c.n.label("n"))


def _whereabouts_of_asked(asked: Any, postgres: bool) -> Any:
    place = _CITIES.alias("place")
    return select(
        *(c.label(f"p_{c.name}") for c in _PEOPLE.c),
        *(c.label(f"c_{c.name}") for c in _CITIES.c),
        _accessible(postgres).label("accessible"),
        *(c.label(f"b_{c.name}") for c in place.c),
    ).select_from(
        asked.outerjoin(_PEOPLE, _PEOPLE.c.identity == asked.c.who)
        .outerjoin(_CITIES, _CITIES.c.id == _PEOPLE.c.city_id)
        .outerjoin(_BINDINGS, _BINDINGS.c.conversation == asked.c.conversation)
        .outerjoin(place, place.c.id == _BINDINGS.c.city_id)
    )


@dataclass(frozen=True)
class Whereabouts:
    """Who is speaking and where: the sender on the roster (or None) with their city (a member's),
    and the city the conversation is bound to (None for a direct message or an unbound channel);
    for a coach or an admin, the ids of every city they may see, read in the same statement."""

    person: Person | None
    city: City | None
    channel_city: City | None
    accessible: list[int] | None = None


def whereabouts(store: Store, sender: str, conversation: str | None) -> Whereabouts:
    """Who `sender` is and where `conversation` belongs, in one statement (`conversation` None: a
    direct message, bound to nothing). Every message asks this first, so the rows are read without
    the ORM (whose work was most of the statement's) and given as detached objects: read them, never
    change them. A coach's or an admin's cities come in the same statement: one round trip fewer for
    every message a coach sends."""
    statement = _whereabouts(_postgres(store))
    row = (
        store.session.connection()
        .execute(statement, {"who": sender, "conversation": conversation})
        .mappings()
        .one()
    )
    return _whereabouts_in(row)


def whereabouts_of(store: Store, asked: Sequence[tuple[str, str | None]]) -> list[Whereabouts]:
    """`whereabouts` of each (sender, conversation) of `asked`, in its order, in one statement: a
    batch of messages asks once, not once a message."""
    if len(asked) < 2:
        # Alone, as an idle server handles each message: PostgreSQL plans the list's statement afresh
        # at every call (0.57 ms against 0.33 ms for the one-pair statement, whose plan it keeps).
        return [whereabouts(store, who, where) for who, where in asked]
    postgres = _postgres(store)
    if postgres:
        params: dict[str, Any] = {"who": [w for w, _ in asked], "conversation": [c for _, c in asked]}
    else:
        params = {"asked": json.dumps(list(asked))}
    rows = store.session.connection().execute(_whereabouts_many(postgres), params).mappings().all()
    # Ordinality counts from 1, json_each's keys from 0.
    found = {int(row["n"]) - (1 if postgres else 0): _whereabouts_in(row) for row in rows}
    return [found[n] for n in range(len(asked))]


def _whereabouts_in(row: Any) -> Whereabouts:
    channel_city = _city_in(row, "b_")
    if row["p_id"] is None:
        return Whereabouts(None, None, channel_city)
    person = Person.model_construct(**{c.name: row[f"p_{c.name}"] for c in _PEOPLE.c})
    accessible = None if row["p_role"] == Role.member else _as_ids(row["accessible"])
    return Whereabouts(person, _city_in(row, "c_"), channel_city, accessible)


def _city_in(row: Any, prefix: str) -> City | None:
    if row[f"{prefix}id"] is None:
        return None
    return City.model_construct(**{c.name: row[f"{prefix}{c.name}"] for c in _CITIES.c})
