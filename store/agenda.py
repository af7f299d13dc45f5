"""The scheduler's side of the store: what falls due, its plans, and outbox rows written in bulk.

`cities.plan_at` and `people.plan_at` (migration 0007) say when the scheduler must next look at a city
or a coach; NULL means at the next pass. Triggers clear them whenever something that could bring a
message forward is written (0012: a program calendar loaded), so a pass reads only what is due, not
every city.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    JSON,
    Engine,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
    update,
)

from store import bulk
from store.db import reader
from store.models import (
    IN_PROGRAM,
    STALE_KIND,
    Blocker,
    BlockerStatus,
    ChannelBinding,
    City,
    CoachCity,
    CoachingSession,
    InboxMessage,
    InboxStatus,
    OutboxMessage,
    OutboxReceipt,
    OutboxStatus,
    Person,
    Role,
    Update,
)
from store.repo import Store, open_store
from store.views import SessionRow, in_json_list

# Taken around each writing transaction: the server's turn to write (bot/runtime/turns.py), so that on
# SQLite what arrives meanwhile is stored between a pass's writes rather than after SQLite's busy wait.
Turn = Callable[[], AbstractContextManager[object]]
T = TypeVar("T")

# An outbox row as the driver takes it, in the order of OUTBOX_COLUMNS: instants already converted
# (`bulk.value`), the payload already JSON text.
OutboxRow = tuple[Any, ...]


def _postgres(store: Store) -> bool:
    return store.session.get_bind().dialect.name == "postgresql"


def chunked(values: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _due(model: Any) -> Any:
    # A plan later than any the planner sets from `now` was set by a clock that has since gone back
    # (a test, a corrected clock): it is looked at again.
    return or_(
        model.plan_at.is_(None),
        model.plan_at <= bindparam("now", type_=model.plan_at.type),
        model.plan_at > bindparam("latest", type_=model.plan_at.type),
    )


def due_cities(store: Store, now: datetime, latest: datetime) -> list[int]:
    """The cities whose plan time has come (`latest`: the furthest plan the planner sets from now); an
    archived city is planned no more."""
    query = select(City.id).where(_due(City), IN_PROGRAM).order_by(City.id)
    return list(store.session.execute(query, {"now": now, "latest": latest}).scalars())


def due_coaches(store: Store, now: datetime, latest: datetime) -> list[int]:
    query = select(Person.id).where(Person.role == Role.coach, _due(Person)).order_by(Person.id)
    return list(store.session.execute(query, {"now": now, "latest": latest}).scalars())


def _listed(values: Sequence[Any]) -> str:
    """A list bound as one parameter (JSON text): the statement stays the same whatever its length,
    so it is compiled once, where an IN list of a thousand parameters is written out on every call."""
    return json.dumps(list(values))


def claim(store: Store, model: Any, ids: Sequence[int], now: datetime) -> None:
    """Mark `ids` as being planned at `now`: a write that clears a plan while the pass reads (a session
    added) changes the mark, and the pass then leaves the plan cleared instead of setting it."""
    if ids:
        postgres = _postgres(store)
        statement = _claim_statement(model, postgres)
        store.session.connection().execute(statement, {"ids": _ids(ids, postgres), "now": now})


@cache
def _claim_statement(model: Any, postgres: bool) -> Any:
    return update(model).where(_among(model.id, postgres)).values(plan_at=bindparam("now"))


def set_plans(store: Store, model: Any, plans: dict[int, datetime], claimed: datetime | None) -> None:
    """When each of these cities or coaches needs planning next; with `claimed`, only where the mark of
    `claim` is still there. One statement (an UPDATE joined to the plans, given as one JSON list)."""
    if not plans:
        return
    postgres = _postgres(store)
    table = model.__tablename__
    done: dict[Any, Any] = {}
    # Instants as SQLAlchemy writes them (PostgreSQL reads its own text form of them).
    listed = _listed([(target, str(bulk.value(at, postgres, done))) for target, at in plans.items()])
    if postgres:
        sql = f"UPDATE {table} AS t SET plan_at = (v.e->>1)::timestamp "
        sql += "FROM json_array_elements(%s::json) AS v(e) WHERE t.id = (v.e->>0)::int"
        mark = "%s"
    else:
        sql = f"UPDATE {table} SET plan_at = v.next FROM (SELECT json_extract(value, '$[0]') AS id, "
        sql += f"json_extract(value, '$[1]') AS next FROM json_each(?)) AS v WHERE {table}.id = v.id"
        mark = "?"
    values: list[Any] = [listed]
    if claimed is not None:
        sql += f" AND {'t' if postgres else table}.plan_at = {mark}"
        values.append(bulk.value(claimed, postgres, done))
    store.session.connection().exec_driver_sql(sql, tuple(values))


def existing_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Which of these outbox keys are taken, in one statement (the keys: one JSON list)."""
    return set(_taken(store, keys))


def _taken(store: Store, keys: Sequence[str]) -> dict[str, Any]:
    """The taken ones of these outbox keys, each with when its row was made."""
    if not keys:
        return {}
    statement = _statement("taken", _postgres(store))
    found = store.session.connection().execute(statement, {"keys": _listed(keys)})
    return {key: created for key, created in found}


OUTBOX_COLUMNS = [
    *("key", "recipient", "kind", "city_id", "payload", "status", "attempts"),
    *("due_at", "next_attempt_at", "expires_at", "last_error", "created_at"),
]
# Their types as PostgreSQL's binary COPY takes them (the JSON payload is sent as its text).
_OUTBOX_TYPES = [
    *("text", "text", "text", "int4", "text", "text", "int4"),
    *(["timestamp"] * 3),
    "text",
    "timestamp",
]


def insert_outbox(store: Store, rows: Sequence[OutboxRow]) -> set[str]:
    """Write outbox rows, each once: a row whose key is taken (another pass, another server) is left
    out. The keys of the rows written."""
    if not rows:
        return set()
    if bulk.insert_rows(store, "outbox", OUTBOX_COLUMNS, _OUTBOX_TYPES, rows) == len(rows):
        return {row[0] for row in rows}
    # Some keys were taken since the pass read them: the rows written are those this pass made.
    created = rows[0][OUTBOX_COLUMNS.index("created_at")]
    postgres = _postgres(store)
    taken = _taken(store, [row[0] for row in rows])
    return {key for key, at in taken.items() if bulk.value(at, postgres, {}) == created}


# -- what planning a batch reads: plain rows, not the ORM's objects -----------------------------------------
@dataclass(frozen=True, slots=True)
class CityRow:
    """A city as the planner reads it."""

    id: int
    slug: str
    name: str
    zone: str
    language: str
    pathway: str | None
    reminder_offsets: tuple[int, ...]
    nudge_after_days: int
    nudge_hour: int
    working_days: tuple[int, ...]
    quiet_start: int
    quiet_end: int
    stale_blocker_days: int
    created_at: datetime


_CITY_COLUMNS = [f.name for f in fields(CityRow)]
_CITY_LISTS = [_CITY_COLUMNS.index(f) for f in ("reminder_offsets", "working_days")]  # JSON lists


@dataclass(frozen=True, slots=True)
class LatestUpdate:
    id: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CoachRow:
    """A coach as the digest needs them."""

    id: int
    identity: str
    zone: str | None
    all_cities: bool


def _among(column: Any, postgres: bool) -> Any:
    """`column IN :ids`, one parameter whatever the number of ids (see `_ids`)."""
    given = bindparam("ids", type_=String())
    if postgres:
        # Read in a subquery, so that it is done once, not once for each row a scan looks at.
        listed = select(func.unnest(cast(given, ARRAY(Integer)))).scalar_subquery()
        return column == any_(func.array(listed))
    return in_json_list(column, given)


def _ids(ids: Sequence[int], postgres: bool) -> str:
    """The value of `:ids` as text: an array as PostgreSQL writes it (the driver would turn a list
    into one number by number), a JSON list for SQLite."""
    return "{" + ",".join(str(int(i)) for i in ids) + "}" if postgres else _listed(ids)


@cache
def _statement(name: str, postgres: bool) -> Any:
    """Built once per dialect: building a statement costs more than running it."""
    if name == "cities":
        table = City.__table__  # type: ignore[attr-defined]
        # As stored: the JSON lists (as text) and the instant are read below, each distinct one once.
        columns = [table.c[name] for name in _CITY_COLUMNS]
        for index in _CITY_LISTS:
            columns[index] = cast(columns[index], String())
        columns[-1] = type_coerce(table.c.created_at, String())
        return select(*columns).where(_among(table.c.id, postgres))
    if name == "coaches":
        table = Person.__table__  # type: ignore[attr-defined]
        columns = [table.c[f.name] for f in fields(CoachRow)]
        return select(*columns).where(_among(table.c.id, postgres)).order_by(table.c.id)
    if name == "channels":
        bound = ChannelBinding.__table__  # type: ignore[attr-defined]
        query = select(bound.c.city_id, bound.c.conversation).where(_among(bound.c.city_id, postgres))
        return query.order_by(bound.c.conversation)
    people = Person.__table__  # type: ignore[attr-defined]
    if name == "members":
        # Those who said `stop` hear nothing unprompted.
        query = select(people.c.city_id, people.c.identity).where(
            _among(people.c.city_id, postgres), people.c.role == Role.member, people.c.stopped_at.is_(None)
        )
        return query.order_by(people.c.identity)
    if name == "coach_links":
        links = CoachCity.__table__  # type: ignore[attr-defined]
        query = select(links.c.city_id, people.c.identity).join(people, people.c.id == links.c.person_id)
        return query.where(_among(links.c.city_id, postgres), people.c.role == Role.coach)
    if name == "sessions":
        table = CoachingSession.__table__  # type: ignore[attr-defined]
        # As stored: the wall-clock times and the exceptions are read below.
        raw = {"start_local": type_coerce, "until_local": type_coerce, "exdates": cast}
        columns = [
            raw[f.name](table.c[f.name], String()) if f.name in raw else table.c[f.name]
            for f in fields(SessionRow)
        ]
        return select(*columns).where(_among(table.c.city_id, postgres)).order_by(table.c.start_local)
    if name == "taken":
        outbox = OutboxMessage.__table__  # type: ignore[attr-defined]
        key, given = outbox.c.key, bindparam("keys", type_=String())
        if postgres:
            listed = select(func.json_array_elements_text(cast(given, JSON()))).scalar_subquery()
            return select(key, outbox.c.created_at).where(key == any_(func.array(listed)))
        return select(key, outbox.c.created_at).where(in_json_list(key, given))
    assert name == "latest"
    u = Update.__table__  # type: ignore[attr-defined]
    c = City.__table__  # type: ignore[attr-defined]
    newest = select(u.c.id, u.c.created_at).where(u.c.city_id == c.c.id)
    newest = newest.order_by(u.c.created_at.desc(), u.c.id.desc()).limit(1)
    if postgres:
        # A short backward scan of (city, time) per city; the join to a correlated id made
        # PostgreSQL sort each city's updates.
        lateral = newest.lateral()
        return (
            select(c.c.id, lateral.c.id, lateral.c.created_at)
            .select_from(c)
            .join(lateral, true())
            .where(_among(c.c.id, postgres))
        )
    v = Update.__table__.alias()  # type: ignore[attr-defined]
    first = select(u.c.id).where(u.c.city_id == c.c.id)
    first = first.order_by(u.c.created_at.desc(), u.c.id.desc()).limit(1).scalar_subquery()
    return (
        select(c.c.id, v.c.id, v.c.created_at)
        .select_from(c)
        .join(v, v.c.id == first)
        .where(_among(c.c.id, postgres))
    )


def _rows(store: Store, name: str, ids: Sequence[int]) -> list[Any]:
    if not ids:
        return []
    postgres = _postgres(store)
    return list(
        store.session.connection().execute(_statement(name, postgres), {"ids": _ids(ids, postgres)}).all()
    )


def cities(store: Store, ids: Sequence[int]) -> list[CityRow]:
    """The cities `ids`, by name (then id)."""
    found = []
    for row in _rows(store, "cities", ids):
        values = list(row)
        for index in _CITY_LISTS:
            values[index] = _numbers(values[index])
        values[-1] = _instant(values[-1])
        found.append(CityRow(*values))
    return sorted(found, key=lambda c: (c.name, c.id))


@lru_cache(maxsize=1024)
def _numbers(stored: str) -> tuple[int, ...]:
    """A JSON list of numbers as stored (most cities have the same few)."""
    return tuple(json.loads(stored))


def _instant(stored: str | datetime) -> datetime:
    """An instant as stored (naive UTC; SQLite keeps it as text), aware."""
    return _wall(stored).replace(tzinfo=UTC)  # type: ignore[union-attr]


def coaches(store: Store, ids: Sequence[int]) -> list[CoachRow]:
    return [CoachRow(*row) for row in _rows(store, "coaches", ids)]


def audiences(store: Store, city_ids: Sequence[int]) -> dict[int, tuple[list[str], list[str]]]:
    """Each city's bound channels, and its members who may hear from the bot unprompted (both in
    order)."""
    found: dict[int, tuple[list[str], list[str]]] = {city_id: ([], []) for city_id in city_ids}
    for city_id, conversation in _rows(store, "channels", city_ids):
        found[city_id][0].append(conversation)
    for city_id, identity in _rows(store, "members", city_ids):
        found[city_id][1].append(identity)
    return found


_EVERYWHERE = select(Person.__table__.c.identity).where(  # type: ignore[attr-defined]
    Person.__table__.c.role == Role.coach,  # type: ignore[attr-defined]
    Person.__table__.c.all_cities.is_(True),  # type: ignore[attr-defined]
)


def coaches_everywhere(store: Store) -> set[str]:
    """The coaches of all cities."""
    return set(store.session.connection().execute(_EVERYWHERE).scalars())


def coaches_by_city(store: Store, city_ids: Sequence[int], everywhere: set[str]) -> dict[int, list[str]]:
    """The identities of each city's coaches (`everywhere`: those of all cities), in order."""
    linked: dict[int, set[str]] = {}
    for city_id, identity in _rows(store, "coach_links", city_ids):
        linked.setdefault(city_id, set()).add(identity)
    return {city_id: sorted(everywhere | linked.get(city_id, set())) for city_id in city_ids}


def sessions_by_city(store: Store, city_ids: Sequence[int]) -> dict[int, list[SessionRow]]:
    """Each city's sessions, by start."""
    found: dict[int, list[SessionRow]] = {}
    for id_, city_id, title, start, duration, rule, until, exdates in _rows(store, "sessions", city_ids):
        start, until = _wall(start), _wall(until)
        row = SessionRow(id_, city_id, title, start, duration, rule, until, _texts(exdates))
        found.setdefault(city_id, []).append(row)
    return found


def _wall(stored: str | datetime | None) -> datetime | None:
    """A wall-clock time as stored (SQLite keeps it as text)."""
    return datetime.fromisoformat(stored) if isinstance(stored, str) else stored


def _texts(stored: str) -> list[str]:
    return [] if stored == "[]" else list(json.loads(stored))


def latest_updates(store: Store, city_ids: Sequence[int]) -> dict[int, LatestUpdate]:
    """Each city's newest update (by time, then id), for the cities that have one."""
    return {
        city_id: LatestUpdate(update_id, at) for city_id, update_id, at in _rows(store, "latest", city_ids)
    }


def _in_batches(
    engine: Engine, query: Any, batch: int, turn: Turn, work: Callable[[Store, list[int]], list[T]]
) -> list[T]:
    """`work` on the ids `query` finds (read without a lock), `batch` at a time, each batch in its own
    short transaction in a `turn` of the process's writers; what each returned, together."""
    with open_store(reader(engine)) as store:
        ids = list(store.session.execute(query).scalars())
    done: list[T] = []
    for chunk in chunked(ids, batch):
        with turn(), open_store(engine) as store:
            done += work(store, chunk)
    return done


def drop_expired(
    engine: Engine, now: datetime, reason: str, batch: int = 500, turn: Turn = nullcontext
) -> list[str]:
    """Mark rows still to go whose `expires_at` has passed as dropped, whatever their platform (one with
    no running adapter is never claimed, so no deliverer would drop it), in batches; their keys. Still to
    go: pending, or `sending` under a lease that ran out (its deliverer died, and its platform's adapter
    may run in no process now: `next_attempt_at` is the lease's end)."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    waiting = or_(
        table.c.status == OutboxStatus.pending,
        and_(table.c.status == OutboxStatus.sending, table.c.next_attempt_at <= now),
    )
    expired = select(table.c.id).where(waiting, table.c.expires_at <= now).order_by(table.c.id)

    def drop(store: Store, chunk: list[int]) -> list[str]:
        marked = update(table).where(table.c.id.in_(chunk), waiting)
        changed = marked.values(status=OutboxStatus.dropped, last_error=reason).returning(table.c.key)
        return list(store.session.execute(changed).scalars())

    return _in_batches(engine, expired, batch, turn, drop)


# The states an old outbox row is forgotten in: delivered, or dropped unsent. A failed one stays (the
# coaches' page counts them), as does anything still to go.
FORGETTABLE = (OutboxStatus.sent, OutboxStatus.dropped)


def forget_sent(
    engine: Engine, before: datetime, batch: int = 1000, most: int = 50_000, turn: Turn = nullcontext
) -> int:
    """Outbox rows sent or dropped before `before`, and the platform ids they went out as, in batches;
    at most `most` a pass. A row's key is what keeps its message from being planned twice, so `before`
    must lie past any moment the planner can still plan it for; a stale-blocker notice stays, whatever
    its age, while its blocker is open, its key saying the coaches were told of it. A resolved blocker
    is never reopened, so nothing plans its notice again."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    receipts = OutboxReceipt.__table__  # type: ignore[attr-defined]
    blockers = Blocker.__table__  # type: ignore[attr-defined]
    final = table.c.status.in_(list(FORGETTABLE))
    still_open = exists().where(
        blockers.c.city_id == table.c.city_id,
        blockers.c.status == BlockerStatus.open,
        # The key ends in the blocker's id (models.stale_key).
        table.c.key.endswith(literal(f"|{STALE_KIND}|") + cast(blockers.c.id, String)),
    )
    old = (
        select(table.c.id)
        # next_attempt_at first: (status, next_attempt_at) is indexed, and a row retried lately is not
        # old, whenever it was made.
        .where(final, table.c.next_attempt_at < before, table.c.created_at < before)
        .where(or_(table.c.kind != STALE_KIND, ~still_open))
        .limit(most)
    )

    def forget(store: Store, chunk: list[int]) -> list[int]:
        # Still final, and held so until they go: a delivery report may have made a sent row a failed
        # one since it was read.
        held = select(table.c.id).where(table.c.id.in_(chunk), final).with_for_update()
        gone = list(store.session.execute(held).scalars())
        if gone:
            store.session.execute(delete(receipts).where(receipts.c.outbox_id.in_(gone)))
            store.session.execute(delete(table).where(table.c.id.in_(gone)))
        return gone

    return len(_in_batches(engine, old, batch, turn, forget))


def forget_processed(
    engine: Engine, before: datetime, batch: int = 1000, most: int = 50_000, turn: Turn = nullcontext
) -> int:
    """Drop handled message ids older than any platform retries (they only guard against repeats), in
    batches; at most `most` a pass (the rest go in the next ones), so a backlog never makes one pass
    long."""
    table = InboxMessage.__table__  # type: ignore[attr-defined]
    old = (
        select(table.c.id)
        .where(table.c.received_at < before, table.c.status != InboxStatus.pending)
        .order_by(table.c.id)
        .limit(most)
    )

    def forget(store: Store, chunk: list[int]) -> list[int]:
        store.session.execute(delete(table).where(table.c.id.in_(chunk)))
        return chunk

    return len(_in_batches(engine, old, batch, turn, forget))
