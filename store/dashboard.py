"""Queries of the coaches' page. The portfolio reads each figure for all the cities it shows in one
statement (grouped by city), never one per city: 80 or 1,000 cities cost the same few round trips."""

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, or_, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from store.models import (
    IN_PROGRAM,
    Blocker,
    BlockerStatus,
    City,
    CoachCity,
    CoachingSession,
    DashboardLink,
    DashboardSecret,
    DashboardSession,
    Person,
    Role,
    Update,
)
from store.repo import Store

WEEK = timedelta(days=7)


# -- the portfolio: one statement per figure ----------------------------------------------------------


# `city_ids` below: the cities to read, or None for every city (a coach of all cities, an admin), which
# spares the database a list of a thousand ids to parse and match.
Cities = Sequence[int] | None


def _among(column: Any, city_ids: Cities) -> Any:
    return true() if city_ids is None else column.in_(list(city_ids))


def coached(store: Store, person: Person) -> tuple[bool, list[int]]:
    """Whether `person` sees every city, and the ids of the cities they see (as `Store.coached_city_ids`
    decides, reading ids only: a page load asks this every time)."""
    if person.all_cities or person.role == Role.admin:
        return True, list(store.session.exec(select(City.id).order_by(City.id)))  # type: ignore[arg-type]
    return False, list(store.session.exec(select(CoachCity.city_id).where(CoachCity.person_id == person.id)))


def weekly_updates(store: Store, city_ids: Cities, now: datetime, weeks: int) -> dict[int, list[int]]:
    """Updates per city in each of the last `weeks` seven-day windows ending at `now`, oldest first; a
    city with none in any window is left out."""
    since = now - WEEK * weeks
    # Which window an update falls in, as bound instants rather than date arithmetic, which SQLite and
    # PostgreSQL each spell their own way.
    window = case(*[(col(Update.created_at) >= now - WEEK * (i + 1), i) for i in range(weeks)])
    # Grouped in an outer query: PostgreSQL binds the CASE's instants anew in a GROUP BY, and then
    # cannot tell that it is the expression selected.
    inner = (
        select(col(Update.city_id).label("city_id"), window.label("window"))
        .where(_among(col(Update.city_id), city_ids), Update.created_at >= since, Update.created_at <= now)
        .subquery()
    )
    query = select(inner.c.city_id, inner.c.window, func.count()).group_by(inner.c.city_id, inner.c.window)
    counts: dict[int, list[int]] = defaultdict(lambda: [0] * weeks)
    for city_id, index, count in store.session.execute(query):
        counts[city_id][weeks - 1 - index] = count
    return dict(counts)


def last_updates(store: Store, city_ids: Cities) -> dict[int, datetime]:
    # Per city, the newest row of the (city_id, created_at) index: a thousand short index reads, where a
    # GROUP BY would read every update ever posted.
    newest = (
        select(func.max(Update.created_at)).where(Update.city_id == City.id).correlate(City).scalar_subquery()
    )
    query = select(City.id, newest).where(_among(col(City.id), city_ids))
    return {city_id: last for city_id, last in store.session.execute(query) if last is not None}


@dataclass(frozen=True)
class OpenBlockers:
    count: int
    oldest: datetime


def open_blockers(store: Store, city_ids: Cities) -> dict[int, OpenBlockers]:
    query = (
        select(Blocker.city_id, func.count(), func.min(Blocker.opened_at))
        .where(_among(col(Blocker.city_id), city_ids), Blocker.status == BlockerStatus.open)
        .group_by(Blocker.city_id)
    )
    return {city_id: OpenBlockers(count, oldest) for city_id, count, oldest in store.session.execute(query)}


def cities(store: Store, city_ids: Cities, archived: bool = False) -> list[City]:
    """The cities the page shows: those still in the program, and archived ones too when `archived` (a
    city's own page, opened by name, shows it as before, as `/cda status SLUG` does)."""
    query = select(City).where(_among(col(City.id), city_ids))
    if not archived:
        query = query.where(IN_PROGRAM)
    return list(store.session.exec(query.order_by(City.name)))


@dataclass(frozen=True)
class Series:
    """A city's session (one-off or recurring) as plain values: cheaper to read for a thousand cities
    than ORM objects, and hashable, so what is worked out from it can be remembered by it."""

    id: int
    city_id: int
    title: str
    start_local: datetime
    duration_min: int
    rrule: str | None
    until_local: datetime | None
    exdates: tuple[str, ...]

    def model(self) -> CoachingSession:
        return CoachingSession(
            id=self.id,
            city_id=self.city_id,
            title=self.title,
            start_local=self.start_local,
            duration_min=self.duration_min,
            rrule=self.rrule,
            until_local=self.until_local,
            exdates=list(self.exdates),
        )


def series_by_city(store: Store, city_ids: Cities) -> dict[int, list[Series]]:
    table = CoachingSession.__table__  # type: ignore[attr-defined]
    query = (
        select(
            table.c.id,
            table.c.city_id,
            table.c.title,
            table.c.start_local,
            table.c.duration_min,
            table.c.rrule,
            table.c.until_local,
            table.c.exdates,
        )
        .where(_among(table.c.city_id, city_ids))
        .order_by(table.c.city_id, table.c.start_local)
    )
    found: dict[int, list[Series]] = defaultdict(list)
    for row in store.session.execute(query):
        found[row.city_id].append(Series(*row[:-1], tuple(row.exdates or ())))
    return found


# -- a city's page ------------------------------------------------------------------------------------


def updates_between(store: Store, city_id: int, since: datetime, until: datetime) -> list[Update]:
    query = (
        select(Update)
        .where(Update.city_id == city_id, Update.created_at >= since, Update.created_at <= until)
        .order_by(col(Update.created_at).desc(), col(Update.id).desc())
    )
    return list(store.session.exec(query))


def blockers_touched(store: Store, city_id: int, since: datetime) -> list[Blocker]:
    """Blockers opened or resolved since `since`."""
    query = select(Blocker).where(
        Blocker.city_id == city_id,
        or_(col(Blocker.opened_at) >= since, col(Blocker.resolved_at) >= since),
    )
    return list(store.session.exec(query.order_by(Blocker.opened_at, Blocker.id)))


# -- the signing key, links and sessions --------------------------------------------------------------


def _insert(store: Store, table: Any) -> Any:
    if store.session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def shared_secret(store: Store, name: str, make: Callable[[], str], now: datetime) -> str:
    """The secret called `name`, made by `make` the first time anyone asks. Two replicas asking at once
    both end up with the one that was stored first."""
    query = select(DashboardSecret.value).where(DashboardSecret.name == name)
    known = store.session.exec(query).first()
    if known is not None:
        return known
    table = DashboardSecret.__table__  # type: ignore[attr-defined]
    store.session.execute(
        _insert(store, table)
        .values(name=name, value=make(), created_at=now)
        .on_conflict_do_nothing(index_elements=[table.c.name])
    )
    return store.session.exec(query).one()


def add_link(store: Store, link: DashboardLink) -> DashboardLink:
    store.session.add(link)
    store.session.flush()
    return link


def link_by_nonce(store: Store, nonce: str) -> DashboardLink | None:
    return store.session.exec(select(DashboardLink).where(DashboardLink.nonce == nonce)).first()


def use_link(store: Store, link_id: int, now: datetime) -> bool:
    """Mark a link used, if it is unused and live, in one statement: of two browsers opening it at
    once, one gets it."""
    result = store.session.execute(
        update(DashboardLink)
        .where(
            col(DashboardLink.id) == link_id,
            col(DashboardLink.used_at).is_(None),
            col(DashboardLink.expires_at) > now,
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def add_session(store: Store, session: DashboardSession) -> DashboardSession:
    store.session.add(session)
    store.session.flush()
    return session


def live_session(store: Store, token_hash: str, now: datetime) -> DashboardSession | None:
    query = select(DashboardSession).where(
        DashboardSession.token_hash == token_hash,
        col(DashboardSession.revoked_at).is_(None),
        col(DashboardSession.expires_at) > now,
    )
    return store.session.exec(query).first()


def end_session(store: Store, session_id: int, now: datetime) -> None:
    store.session.execute(
        update(DashboardSession)
        .where(col(DashboardSession.id) == session_id, col(DashboardSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def revoke(store: Store, identity: str, now: datetime) -> int:
    """End every session of `identity` and forget its unused links; how many sessions were open. A link
    forgotten is refused as not valid: marked used, it was said to be "used already", by nobody."""
    ended = store.session.execute(
        update(DashboardSession)
        .where(DashboardSession.identity == identity, col(DashboardSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    store.session.execute(
        delete(DashboardLink).where(DashboardLink.identity == identity, col(DashboardLink.used_at).is_(None))
    )
    return int(ended.rowcount)  # type: ignore[attr-defined]


def forget_expired(store: Store, before: datetime) -> None:
    """Links and sessions past their end are refused either way; the rows only take up room."""
    store.session.execute(delete(DashboardLink).where(col(DashboardLink.expires_at) < before))
    store.session.execute(delete(DashboardSession).where(col(DashboardSession.expires_at) < before))
