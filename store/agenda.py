"""The scheduler's side of the store: what falls due, its plans, and outbox rows written in bulk.

`cities.plan_at` and `people.plan_at` (migration 0007) say when the scheduler must next look at a city
or a coach; NULL means at the next pass. Triggers clear them whenever something that could bring a
message forward is written, so a pass reads only what is due, not every city.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Engine, String, any_, bindparam, delete, or_, select, update

from store import bulk
from store.db import reader
from store.models import City, InboxMessage, InboxStatus, OutboxMessage, OutboxStatus, Person, Role
from store.repo import Store, open_store

CHUNK = 900  # values in one IN list on SQLite


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
    """The cities whose plan time has come (`latest`: the furthest plan the planner sets from now)."""
    query = select(City.id).where(_due(City)).order_by(City.id)
    return list(store.session.execute(query, {"now": now, "latest": latest}).scalars())


def due_coaches(store: Store, now: datetime, latest: datetime) -> list[int]:
    query = select(Person.id).where(Person.role == Role.coach, _due(Person)).order_by(Person.id)
    return list(store.session.execute(query, {"now": now, "latest": latest}).scalars())


def claim(store: Store, model: Any, ids: Sequence[int], now: datetime) -> None:
    """Mark `ids` as being planned at `now`: a write that clears a plan while the pass reads (a session
    added) changes the mark, and the pass then leaves the plan cleared instead of setting it."""
    for chunk in chunked(ids, CHUNK):
        store.session.execute(update(model).where(model.id.in_(chunk)).values(plan_at=now))


def set_plans(store: Store, model: Any, plans: dict[int, datetime], claimed: datetime | None) -> None:
    """When each of these cities or coaches needs planning next; with `claimed`, only where the mark of
    `claim` is still there. One statement per thousand rows (an UPDATE joined to a VALUES list), not
    one per row."""
    if not plans:
        return
    postgres = _postgres(store)
    table = model.__tablename__
    done: dict[Any, Any] = {}
    items = list(plans.items())
    for start in range(0, len(items), 1000):
        chunk = items[start : start + 1000]
        if postgres:
            rows = ", ".join("(%s::int, %s::timestamp)" for _ in chunk)
            sql = f"UPDATE {table} AS t SET plan_at = v.next FROM (VALUES {rows}) AS v(id, next) "
            sql += "WHERE t.id = v.id"
            mark = "%s"
        else:
            rows = ", ".join("(?, ?)" for _ in chunk)
            sql = f"UPDATE {table} SET plan_at = v.column2 FROM (VALUES {rows}) AS v "
            sql += f"WHERE {table}.id = v.column1"
            mark = "?"
        values: list[Any] = [v for target, at in chunk for v in (target, bulk.value(at, postgres, done))]
        if claimed is not None:
            sql += f" AND {'t' if postgres else table}.plan_at = {mark}"
            values.append(bulk.value(claimed, postgres, done))
        store.session.connection().exec_driver_sql(sql, tuple(values))


def existing_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Which of these outbox keys are taken, in as few statements as the dialect allows."""
    found: set[str] = set()
    key = OutboxMessage.__table__.c.key  # type: ignore[attr-defined]
    if _postgres(store):
        chunks = chunked(keys, 20_000)
        condition = key == any_(bindparam("keys", type_=ARRAY(String())))
    else:
        chunks = chunked(keys, CHUNK)
        condition = key.in_(bindparam("keys", expanding=True))
    statement = select(key).where(condition)
    for chunk in chunks:
        found.update(store.session.execute(statement, {"keys": chunk}).scalars())
    return found


OUTBOX_COLUMNS = [
    *("key", "recipient", "kind", "city_id", "payload", "status", "attempts"),
    *("due_at", "next_attempt_at", "expires_at", "last_error", "created_at"),
]


def insert_outbox(store: Store, rows: list[dict[str, Any]]) -> set[str]:
    """Write outbox rows, each once: a row whose key is taken (another pass, another server) is left
    out. The keys of the rows written."""
    if not rows:
        return set()
    keys = [row["key"] for row in rows]
    if bulk.insert_ignoring(store, "outbox", OUTBOX_COLUMNS, rows) == len(rows):
        return set(keys)
    # Some keys were taken since the pass read them: the rows written are those this pass made.
    created = rows[0]["created_at"]
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    mine: set[str] = set()
    for chunk in chunked(keys, CHUNK):
        query = select(table.c.key, table.c.created_at).where(table.c.key.in_(chunk))
        mine.update(k for k, at in store.session.execute(query) if at == created)
    return mine


def drop_expired(engine: Engine, now: datetime, reason: str, batch: int = 500) -> list[str]:
    """`Store.drop_expired` in batches of `batch` rows, each its own short transaction."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    expired = (
        select(table.c.id)
        .where(table.c.status == OutboxStatus.pending, table.c.expires_at <= now)
        .order_by(table.c.id)
    )
    dropped: list[str] = []
    with open_store(reader(engine)) as store:
        ids = list(store.session.execute(expired).scalars())
    for chunk in chunked(ids, batch):
        with open_store(engine) as store:
            keys = store.session.execute(
                update(table)
                .where(table.c.id.in_(chunk), table.c.status == OutboxStatus.pending)
                .values(status=OutboxStatus.dropped, last_error=reason)
                .returning(table.c.key)
            ).scalars()
            dropped += keys
    return dropped


def forget_processed(engine: Engine, before: datetime, batch: int = 1000, most: int = 50_000) -> int:
    """`Store.forget_processed` in batches, each its own short transaction; at most `most` rows a
    pass (the rest go in the next ones), so a backlog never makes one pass long."""
    table = InboxMessage.__table__  # type: ignore[attr-defined]
    old = (
        select(table.c.id)
        .where(table.c.received_at < before, table.c.status != InboxStatus.pending)
        .order_by(table.c.id)
        .limit(most)
    )
    with open_store(reader(engine)) as store:
        ids = list(store.session.execute(old).scalars())
    for chunk in chunked(ids, batch):
        with open_store(engine) as store:
            store.session.execute(delete(table).where(table.c.id.in_(chunk)))
    return len(ids)
