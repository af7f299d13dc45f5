"""Queries. A `Store` is one unit of work: everything done through it commits together or not at all."""

import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, bindparam, delete, func, or_, text, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from bot.core.i18n import unaccented
from store.models import (
    REPLY_KIND,
    REPLY_WAITING,
    Blocker,
    BlockerStatus,
    ChannelBinding,
    City,
    CoachCity,
    CoachingSession,
    ConversationReference,
    InboxMessage,
    InboxStatus,
    JoinCode,
    OptOut,
    OutboxMessage,
    OutboxReceipt,
    OutboxStatus,
    Person,
    ProgramCalendar,
    Role,
    Update,
)
from store.types import driver_instant


class Finished(NamedTuple):
    """How one send ended, as `finish_all` writes it."""

    outbox_id: int
    attempts: int  # as the claim the send was made under set them
    status: OutboxStatus
    now: datetime
    error: str | None = None
    retry_at: datetime | None = None


class Claim(NamedTuple):
    """An outbox row as a deliverer claimed it: what `release_claims` checks the row still holds."""

    id: int
    attempts: int
    lease: datetime


class Store:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.planned = 0  # outbox rows `enqueue` wrote in this unit of work: a deliverer has news
        # `updates_together`: ids taken for updates not yet written, and the updates waiting to be.
        self._update_ids: list[int] = []
        self._updates_waiting: list[tuple[Any, ...]] = []

    # -- cities ---------------------------------------------------------------------------------
    def add_city(self, city: City) -> City:
        self.session.add(city)
        self.session.flush()
        return city

    def city(self, city_id: int) -> City | None:
        return self.session.get(City, city_id)

    def city_by_slug(self, slug: str) -> City | None:
        return self.session.exec(select(City).where(City.slug == slug.lower())).first()

    def find_city(self, ref: str) -> City | None:
        """A city by slug, or by slug or name whatever the case and accents ("sao jeronimo", "ÁVILA"), as
        a detached row: read it, never change it (a command naming a city asks this for each run of its
        words, so it is read without the ORM)."""
        # Composed, as names are stored: "ã" may come as "a" and a combining tilde (macOS, some keyboards).
        ref = unicodedata.normalize("NFC", ref.strip()).lower()
        connection = self.session.connection()
        row = connection.execute(_CITY_BY_SLUG, {"ref": ref}).mappings().first()
        if row is None:
            # Compared here, as SQLite's lower() folds ASCII letters only; only names as long as `ref`
            # are read, since case and accents aside a name keeps its length.
            wanted = unaccented(ref)
            found = connection.execute(_CITIES_AS_LONG, {"length": len(ref)}).mappings().all()
            alike = [r for r in found if wanted in (unaccented(r["slug"]), unaccented(r["name"]))]
            # The name as typed goes first, should two differ by accents alone.
            row = next((r for r in alike if r["name"].lower() == ref), alike[0] if alike else None)
        return City.model_construct(**row) if row is not None else None

    def cities(self, ids: Sequence[int] | None = None) -> list[City]:
        query = select(City).order_by(City.name)
        if ids is not None:
            query = query.where(col(City.id).in_(list(ids)))
        return list(self.session.exec(query))

    # -- people ---------------------------------------------------------------------------------
    def person(self, identity: str) -> Person | None:
        return self.session.exec(select(Person).where(Person.identity == identity)).first()

    def on_roster(self, identities: Sequence[str]) -> set[str]:
        """Which of these identities are on a roster, in one statement."""
        if not identities:
            return set()
        query = core_select(_PEOPLE.c.identity).where(_PEOPLE.c.identity.in_(set(identities)))
        return set(self.session.connection().execute(query).scalars())

    def people(self, identities: Sequence[str]) -> list[Person]:
        return list(self.session.exec(select(Person).where(col(Person.identity).in_(list(identities)))))

    def add_person(self, person: Person, coached_city_ids: Sequence[int] = ()) -> Person:
        kept = self.session.get(OptOut, person.identity)
        if kept is not None:  # a `stop` said before they were taken off the roster still holds
            person.stopped_at = person.stopped_at or kept.stopped_at
            self.session.delete(kept)
        self.session.add(person)
        self.session.flush()
        for city_id in coached_city_ids:
            self.session.add(CoachCity(person_id=person.id, city_id=city_id))
        self.session.flush()
        return person

    def remove_person(self, person: Person) -> None:
        """Off the roster with the cities they coach. A `stop` they said is kept apart (`OptOut`): it
        is theirs, and outlasts the roster row an admin removes to move or re-add them."""
        for link in self.session.exec(select(CoachCity).where(CoachCity.person_id == person.id)):
            self.session.delete(link)
        if person.stopped_at is not None:
            self.session.merge(OptOut(identity=person.identity, stopped_at=person.stopped_at))
        self.session.delete(person)
        self.session.flush()

    def coached_city_ids(self, person: Person) -> list[int]:
        if person.all_cities or person.role == Role.admin:
            return [c.id for c in self.cities() if c.id is not None]
        rows = self.session.exec(select(CoachCity.city_id).where(CoachCity.person_id == person.id))
        return list(rows)

    def coaches(self) -> list[Person]:
        return list(
            self.session.exec(select(Person).where(Person.role == Role.coach).order_by(Person.identity))
        )

    def admins(self) -> list[Person]:
        return list(
            self.session.exec(select(Person).where(Person.role == Role.admin).order_by(Person.identity))
        )

    def coaches_of(self, city_id: int) -> list[Person]:
        linked = select(CoachCity.person_id).where(CoachCity.city_id == city_id)
        query = (
            select(Person)
            .where(Person.role == Role.coach)
            .where(col(Person.all_cities) | col(Person.id).in_(linked))
            .order_by(Person.identity)
        )
        return list(self.session.exec(query))

    def members_of(self, city_id: int) -> list[Person]:
        query = select(Person).where(Person.role == Role.member, Person.city_id == city_id)
        return list(self.session.exec(query.order_by(Person.identity)))

    def set_stopped(self, identity: str, stopped_at: datetime | None) -> bool:
        """Stop (a time) or resume (None) unprompted messages to a person; False if no such person."""
        result = self.session.execute(
            update(Person).where(col(Person.identity) == identity).values(stopped_at=stopped_at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- join codes -----------------------------------------------------------------------------
    def add_join_code(self, code: JoinCode) -> JoinCode:
        self.session.add(code)
        self.session.flush()
        return code

    def join_codes(self, city_ids: Sequence[int] | None = None) -> list[JoinCode]:
        query = select(JoinCode).order_by(JoinCode.created_at, JoinCode.id)
        if city_ids is not None:
            query = query.where(col(JoinCode.city_id).in_(list(city_ids)))
        return list(self.session.exec(query))

    def join_code(self, code: str) -> JoinCode | None:
        return self.session.exec(select(JoinCode).where(JoinCode.code == code)).first()

    def use_join_code(self, code: str, now: datetime) -> int | None:
        """Count one use of a code that is still good, in one statement (two phones sending the last
        use of a code at once cannot both get it); the code's city, or None."""
        result = self.session.execute(
            update(JoinCode)
            .where(
                col(JoinCode.code) == code,
                col(JoinCode.revoked_at).is_(None),
                JoinCode.expires_at > now,
                or_(col(JoinCode.max_uses).is_(None), JoinCode.uses < JoinCode.max_uses),
            )
            .values(uses=JoinCode.uses + 1)
            .returning(JoinCode.city_id)
        ).first()
        return int(result[0]) if result else None

    # -- channel bindings -----------------------------------------------------------------------
    def bind(self, conversation: str, city_id: int, now: datetime) -> ChannelBinding:
        binding = self.session.exec(
            select(ChannelBinding).where(ChannelBinding.conversation == conversation)
        ).first()
        if binding is None:
            binding = ChannelBinding(conversation=conversation, city_id=city_id, created_at=now)
        binding.city_id = city_id
        self.session.add(binding)
        self.session.flush()
        return binding

    def bound_city(self, conversation: str) -> City | None:
        """The city a conversation is bound to, as a detached row: read it, never change it (asked of
        nearly every message, so read without the ORM, whose work was most of the statement's)."""
        row = (
            self.session.connection().execute(_BOUND_CITY, {"conversation": conversation}).mappings().first()
        )
        return None if row is None else City.model_construct(**row)

    def bound_conversations(self, conversations: Sequence[str]) -> set[str]:
        """Which of these conversations are bound to a city, in one statement."""
        if not conversations:
            return set()
        query = core_select(_BINDINGS.c.conversation).where(_BINDINGS.c.conversation.in_(set(conversations)))
        return set(self.session.connection().execute(query).scalars())

    def bindings_of(self, city_id: int) -> list[str]:
        query = select(ChannelBinding.conversation).where(ChannelBinding.city_id == city_id)
        return list(self.session.exec(query.order_by(ChannelBinding.conversation)))

    # -- the inbox: platform messages, stored before they are acknowledged ----------------------
    def receive_all(self, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], int]:
        """Store platform messages once (an inbox row's columns each): the ids of those stored now, by
        (platform, message id); one stored before (a retry, a duplicate) is left out. One statement for a
        few hundred."""
        if not rows:
            return {}
        dialect = self.session.get_bind().dialect.name
        statement = _insert_ignoring(dialect, _INBOX, ("id", "platform", "message_id"))
        stored = self.session.connection().execute(statement, list(rows))
        return {(platform, message_id): id_ for id_, platform, message_id in stored}

    def take_inbox(self, inbox_id: int) -> InboxMessage | None:
        """The pending message `inbox_id`, locked for this transaction; None if it is handled or another
        replica is handling it right now."""
        query = (
            select(InboxMessage)
            .where(InboxMessage.id == inbox_id, InboxMessage.status == InboxStatus.pending)
            .with_for_update(skip_locked=True)
        )
        return self.session.exec(query).first()

    def take_inboxes(self, inbox_ids: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
        """`take_inbox` for many, in the order they arrived: each one's id and what it said."""
        query = (
            core_select(_INBOX.c.id, _INBOX.c.message)
            .where(_INBOX.c.id.in_(list(inbox_ids)), _INBOX.c.status == InboxStatus.pending)
            .order_by(_INBOX.c.id)
            .with_for_update(skip_locked=True)
        )
        return [(id_, message) for id_, message in self.session.connection().execute(query) if message]

    def close_inboxes(self, inbox_ids: Sequence[int], now: datetime) -> None:
        """Mark messages handled; what they said now lives in updates and blockers, not twice."""
        # On the table, not the ORM class: an ORM update first looks for the rows among those loaded,
        # which cost more than the statement.
        self.session.connection().execute(
            update(_INBOX)
            .where(_INBOX.c.id.in_(list(inbox_ids)))
            .values(status=InboxStatus.done, handled_at=now, message=None)
        )

    def fail_inbox(self, inbox_id: int, error: str, now: datetime) -> None:
        """Mark a pending message failed, one statement reading nothing: for when even `inbox.fail`,
        which tells its sender, raises."""
        self.session.connection().execute(
            update(_INBOX)
            .where(_INBOX.c.id == inbox_id, _INBOX.c.status == InboxStatus.pending)
            .values(
                status=InboxStatus.failed,
                handled_at=now,
                last_error=error[:1000],
                attempts=_INBOX.c.attempts + 1,
            )
        )

    def inbox_sources(self, inbox_ids: Sequence[int]) -> list[tuple[str, str]]:
        """Each message's platform and its id there."""
        query = core_select(_INBOX.c.platform, _INBOX.c.message_id).where(_INBOX.c.id.in_(list(inbox_ids)))
        return [(platform, message_id) for platform, message_id in self.session.connection().execute(query)]

    def inbox_ids(
        self, keys: Sequence[tuple[str, str]], status: InboxStatus | None = None
    ) -> dict[tuple[str, str], int]:
        """Which of these messages are stored (and in `status`, where given): (platform, message id) →
        inbox id."""
        if not keys:
            return {}
        wanted = set(keys)
        query = core_select(_INBOX.c.platform, _INBOX.c.message_id, _INBOX.c.id).where(
            _INBOX.c.platform.in_({platform for platform, _ in wanted}),
            _INBOX.c.message_id.in_({message_id for _, message_id in wanted}),
        )
        if status is not None:
            query = query.where(_INBOX.c.status == status)
        found = self.session.connection().execute(query)
        return {(p, m): inbox_id for p, m, inbox_id in found if (p, m) in wanted}

    def due_inbox(self, now: datetime, limit: int) -> list[int]:
        """Pending messages whose turn has come: left by a replica that died, or waiting out a failure."""
        query = (
            select(InboxMessage.id)
            .where(InboxMessage.status == InboxStatus.pending, InboxMessage.next_attempt_at <= now)
            .order_by(InboxMessage.id)
            .limit(limit)
        )
        return [i for i in self.session.exec(query) if i is not None]

    def postpone_inbox(self, inbox_id: int, error: str, retry_at: Callable[[int], datetime]) -> None:
        """Count a failed attempt at a pending message and set its next one (`retry_at(attempts)`)."""
        row = self.session.get(InboxMessage, inbox_id, with_for_update=True)
        if row is None or row.status != InboxStatus.pending:
            return
        row.attempts += 1
        row.last_error = error[:1000]
        row.next_attempt_at = retry_at(row.attempts)
        self.session.add(row)
        self.session.flush()

    def count_pending_inbox(self) -> int:
        pending = InboxMessage.status == InboxStatus.pending
        return self.session.exec(select(func.count()).select_from(InboxMessage).where(pending)).one()

    def _insert_once(self, row: SQLModel) -> int | None:
        """Insert a row whose unique key may exist already, also in a concurrent transaction: one
        statement, no savepoint; the new id, or None where the key was taken."""
        table = type(row).__table__  # type: ignore[attr-defined]
        values = {c.name: getattr(row, c.name) for c in table.columns if getattr(row, c.name) is not None}
        statement = _insert_ignoring(self.session.get_bind().dialect.name, table, ("id",))
        inserted = self.session.connection().execute(statement, values).first()
        if inserted is None:
            return None
        row.id = inserted[0]  # type: ignore[attr-defined]
        return int(inserted[0])

    # -- updates --------------------------------------------------------------------------------
    def add_update(self, city_id: int, author: str, text: str, platform: str, created_at: datetime) -> int:
        """Record an update; its id. Plain SQL to the driver: every `update:` comes here, and building
        an ORM row and running a Core statement cost several times what the database does. Within
        `updates_together`, written with the others by `write_updates`."""
        connection = self.session.connection()
        dialect = connection.dialect.name
        values = (city_id, author, text, platform, driver_instant(created_at, dialect == "postgresql"))
        if self._update_ids:
            update_id = self._update_ids.pop(0)
            self._updates_waiting.append((update_id, *values))
            return update_id
        return int(connection.exec_driver_sql(_ADD_UPDATE[dialect], values).scalar_one())

    @contextmanager
    def updates_together(self, count: int) -> Iterator[None]:
        """Up to `count` updates recorded meanwhile are written in one round trip to PostgreSQL, not
        one each (a handling thread waits for the GIL again after every round trip, and under load that
        wait, not the database, was most of a batch's time). Their ids are taken from the sequence
        first, so each is known when it is recorded; one taken and not used leaves a gap in the
        numbers, as a rolled-back insert does. Whoever reads updates meanwhile calls `write_updates`
        first. SQLite, in the same process, runs each insert in microseconds: one at a time."""
        connection = self.session.connection()
        if connection.dialect.name != "postgresql" or count < 2:
            yield
            return
        taken = connection.exec_driver_sql(_UPDATE_IDS, (count,)).scalars().all()
        self._update_ids = sorted(taken)
        try:
            yield
            self.write_updates()
        finally:
            self._update_ids, self._updates_waiting = [], []

    def write_updates(self) -> None:
        """Write the updates `updates_together` holds back, in one round trip."""
        if not self._updates_waiting:
            return
        waiting, self._updates_waiting = self._updates_waiting, []
        # One statement bound to each row, sent together (psycopg's executemany is a pipeline): one
        # with a row of marks per update would be parsed afresh by psycopg at every call.
        self.session.connection().exec_driver_sql(_WRITE_UPDATES, waiting)  # type: ignore[arg-type]

    def updates(self, city_ids: Sequence[int], since: datetime, limit: int = 50) -> list[Update]:
        query = (
            select(Update)
            .where(col(Update.city_id).in_(list(city_ids)), Update.created_at >= since)
            .order_by(col(Update.created_at).desc(), col(Update.id).desc())
            .limit(limit)
        )
        return list(self.session.exec(query))

    def count_updates(self, city_id: int, since: datetime) -> int:
        query = (
            select(func.count())
            .select_from(Update)
            .where(Update.city_id == city_id, Update.created_at >= since)
        )
        return self.session.exec(query).one()

    def last_update(self, city_id: int) -> Update | None:
        query = (
            select(Update)
            .where(Update.city_id == city_id)
            .order_by(col(Update.created_at).desc(), col(Update.id).desc())
        )
        return self.session.exec(query.limit(1)).first()

    # -- blockers -------------------------------------------------------------------------------
    def add_blocker(self, blocker: Blocker) -> Blocker:
        self.session.add(blocker)
        self.session.flush()
        return blocker

    def blocker(self, blocker_id: int) -> Blocker | None:
        return self.session.get(Blocker, blocker_id)

    def blockers(self, city_ids: Sequence[int], include_resolved: bool = False) -> list[Blocker]:
        query = select(Blocker).where(col(Blocker.city_id).in_(list(city_ids)))
        if not include_resolved:
            query = query.where(Blocker.status == BlockerStatus.open)
        return list(self.session.exec(query.order_by(Blocker.opened_at, Blocker.id)))

    def blockers_opened_before(self, before: datetime) -> list[Blocker]:
        query = select(Blocker).where(Blocker.status == BlockerStatus.open, Blocker.opened_at < before)
        return list(self.session.exec(query.order_by(Blocker.opened_at, Blocker.id)))

    def count_open_blockers(self, city_id: int) -> int:
        query = (
            select(func.count())
            .select_from(Blocker)
            .where(Blocker.city_id == city_id, Blocker.status == BlockerStatus.open)
        )
        return self.session.exec(query).one()

    def resolve_blocker(self, blocker: Blocker, by: str, note: str | None, now: datetime) -> Blocker:
        blocker.status = BlockerStatus.resolved
        blocker.resolved_at = now
        blocker.resolved_by = by
        blocker.resolution_note = note
        self.session.add(blocker)
        self.session.flush()
        return blocker

    # -- coaching sessions ----------------------------------------------------------------------
    def add_session(self, session: CoachingSession) -> CoachingSession:
        self.session.add(session)
        self.session.flush()
        return session

    def session_by_uid(self, city_id: int, uid: str) -> CoachingSession | None:
        query = select(CoachingSession).where(CoachingSession.city_id == city_id, CoachingSession.uid == uid)
        return self.session.exec(query).first()

    def sessions_of(self, city_id: int) -> list[CoachingSession]:
        query = select(CoachingSession).where(CoachingSession.city_id == city_id)
        return list(self.session.exec(query.order_by(CoachingSession.start_local)))

    # -- conversation references ----------------------------------------------------------------
    def save_references(self, rows: Sequence[tuple[str, str, dict[str, Any]]], now: datetime) -> None:
        """`save_reference` for many (key, platform, reference), keys all different, in one statement."""
        if not rows:
            return
        values = [{"key": k, "platform": p, "reference": r, "updated_at": now} for k, p, r in rows]
        self.session.connection().execute(_upsert_reference(self.session.get_bind().dialect.name), values)

    def save_reference(self, key: str, platform: str, reference: dict[str, Any], now: datetime) -> None:
        """Insert or refresh in one statement: the first messages of a new channel arrive together."""
        table = ConversationReference.__table__  # type: ignore[attr-defined]
        statement = _insert(self.session, table).values(
            key=key, platform=platform, reference=reference, updated_at=now
        )
        self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={"reference": statement.excluded.reference, "updated_at": statement.excluded.updated_at},
            )
        )

    def references(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        references = _REFERENCES.c
        query = core_select(references.key, references.reference).where(references.key.in_(list(keys)))
        return {key: reference for key, reference in self.session.connection().execute(query)}

    def reference(self, key: str) -> dict[str, Any] | None:
        row = self.session.exec(select(ConversationReference).where(ConversationReference.key == key)).first()
        return row.reference if row else None

    # -- outbox ---------------------------------------------------------------------------------
    def enqueue(self, message: OutboxMessage) -> bool:
        """Plan a message once: False if one with the same key was planned before."""
        if self._insert_once(message) is None:
            return False
        self.planned += 1
        return True

    def outbox_has(self, key: str) -> bool:
        return bool(self.existing_keys([key]))

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these outbox keys were planned already (one query for a pass over a city)."""
        if not keys:
            return set()
        return set(self.session.exec(select(OutboxMessage.key).where(col(OutboxMessage.key).in_(list(keys)))))

    def claim_due(
        self,
        now: datetime,
        platforms: Sequence[str],
        lease: timedelta,
        limit: int = 100,
        replies_only: bool = False,
    ) -> list[OutboxMessage]:
        """Take due rows for delivery: pending ones, and `sending` ones whose lease ran out (their
        deliverer died); replies first, as someone is waiting for each, then the rest in the order they
        fell due. PostgreSQL skips rows another deliverer has locked; SQLite has one writer."""
        if not platforms:
            return []
        outbox = _OUTBOX.c
        connection = self.session.connection()

        def due(*where: Any, count: int) -> list[Any]:
            query = (
                core_select(_OUTBOX)
                .where(*where, outbox.next_attempt_at <= now)
                .order_by(outbox.next_attempt_at, outbox.id)
                .limit(count)
                .with_for_update(skip_locked=True)
            )
            return list(connection.execute(query).mappings().all())

        rows = due(_replies_waiting(platforms), count=limit)
        if len(rows) < limit and not replies_only:
            rows += due(_waiting(platforms), outbox.kind != REPLY_KIND, count=limit - len(rows))
        if not rows:
            return []
        # Without the ORM: its bookkeeping for each claimed row cost more than the two statements.
        until = now + lease
        connection.execute(
            update(_OUTBOX)
            .where(outbox.id.in_([row["id"] for row in rows]))
            .values(status=OutboxStatus.sending, attempts=outbox.attempts + 1, next_attempt_at=until)
        )
        return [
            OutboxMessage.model_construct(
                **{
                    **row,
                    "status": OutboxStatus.sending,
                    "attempts": row["attempts"] + 1,
                    "next_attempt_at": until,
                }
            )
            for row in rows
        ]

    def reclaim(
        self, key_prefixes: Sequence[str], leases: Sequence[datetime], until: datetime
    ) -> list[OutboxMessage]:
        """Rows whose key starts with one of `key_prefixes` and that are still `sending` under one of
        `leases` — so no deliverer has claimed them since — leased again, until `until`."""
        if not key_prefixes or not leases:
            return []
        outbox = _OUTBOX.c
        query = (
            core_select(_OUTBOX)
            .where(
                outbox.status == OutboxStatus.sending,
                outbox.next_attempt_at.in_(list(leases)),
                or_(*(outbox.key.startswith(prefix, autoescape=True) for prefix in key_prefixes)),
            )
            .order_by(outbox.id)
            .with_for_update()
        )
        connection = self.session.connection()
        rows = connection.execute(query).mappings().all()
        if rows:
            ids = [row["id"] for row in rows]
            connection.execute(update(_OUTBOX).where(outbox.id.in_(ids)).values(next_attempt_at=until))
        return [OutboxMessage.model_construct(**{**row, "next_attempt_at": until}) for row in rows]

    def release_claims(self, claims: Sequence[Claim], now: datetime) -> int:
        """Put back rows a deliverer may hold and will not send: due again at `now`, the attempt not
        counted. Only a row still holding that very claim (its status, attempts and lease) is touched,
        so one the claim never took (its commit failed), or another deliverer has taken since, stays as
        it is. How many were put back."""
        outbox = _OUTBOX.c
        connection = self.session.connection()
        put_back = 0
        for claim in claims:
            holding = (
                outbox.id == claim.id,
                outbox.status == OutboxStatus.sending,
                outbox.attempts == claim.attempts,
                outbox.next_attempt_at == claim.lease,
            )
            unclaimed = {
                "status": OutboxStatus.pending,
                "attempts": claim.attempts - 1,
                "next_attempt_at": now,
            }
            put_back += connection.execute(update(_OUTBOX).where(*holding).values(**unclaimed)).rowcount
        return put_back

    def any_claimable(self, now: datetime, platforms: Sequence[str], replies_only: bool = False) -> bool:
        """Whether a deliverer for these platforms could claim a row (a reply) at `now`: the first one
        found tells (a count would read every row due, hundreds of them when busy)."""
        if not platforms:
            return False
        waiting = _replies_waiting(platforms) if replies_only else _waiting(platforms)
        query = core_select(_OUTBOX.c.id).where(waiting, _OUTBOX.c.next_attempt_at <= now)
        return self.session.connection().execute(query.limit(1)).first() is not None

    def next_due(self, platforms: Sequence[str]) -> datetime | None:
        """When the next row for these platforms falls due (a retry, a reminder, a lease running out)."""
        if not platforms:
            return None
        query = core_select(func.min(_OUTBOX.c.next_attempt_at)).where(_waiting(platforms))
        return self.session.connection().execute(query).scalar()

    def extend_lease(self, ids: Sequence[int], until: datetime) -> None:
        """Keep rows a live deliverer holds from being taken over as if it had died."""
        self.session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(list(ids)), OutboxMessage.status == OutboxStatus.sending)
            .values(next_attempt_at=until)
        )

    def settle(self, key_prefix: str, now: datetime) -> None:
        """Mark pending rows whose key starts with `key_prefix` as sent: they were shown another way."""
        self.session.execute(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.key).startswith(key_prefix), OutboxMessage.status == OutboxStatus.pending
            )
            .values(status=OutboxStatus.sent, sent_at=now)
        )

    def add_receipts(self, sent: Sequence[tuple[int, str, Sequence[str], datetime]]) -> None:
        """The platform's ids of what each (outbox id, platform, ids, when) went out as, in one
        statement for all of them (a group commit's sends); an id already recorded is left as it is."""
        rows = [
            {
                "platform": platform,
                "platform_id": platform_id,
                "outbox_id": outbox_id,
                "part": part,
                "created_at": at,
            }
            for outbox_id, platform, platform_ids, at in sent
            for part, platform_id in enumerate(platform_ids, start=1)
        ]
        if rows:
            dialect = self.session.get_bind().dialect.name
            self.session.connection().execute(_insert_ignoring(dialect, _RECEIPTS), rows)

    def parts_sent(self, outbox_id: int) -> list[str]:
        """The platform's ids of the parts a row went out as so far, in order."""
        receipts = _RECEIPTS.c
        query = core_select(receipts.platform_id).where(receipts.outbox_id == outbox_id)
        return list(self.session.connection().execute(query.order_by(receipts.part)).scalars())

    def forget_parts(self, outbox_id: int) -> None:
        """A row goes out whole again: the parts it went out as so far are no longer its."""
        self.session.connection().execute(delete(_RECEIPTS).where(_RECEIPTS.c.outbox_id == outbox_id))

    def sent_as(self, platform: str, platform_id: str) -> OutboxMessage | None:
        """The outbox row a platform's message id belongs to."""
        query = (
            select(OutboxMessage)
            .join(OutboxReceipt, col(OutboxReceipt.outbox_id) == OutboxMessage.id)
            .where(OutboxReceipt.platform == platform, OutboxReceipt.platform_id == platform_id)
        )
        return self.session.exec(query.with_for_update()).first()

    def failed_deliveries(self, city_ids: Sequence[int]) -> dict[int, tuple[int, str | None]]:
        """Per city with any: how many messages to it failed for good, and the latest one's error."""
        if not city_ids:
            return {}
        failed = (col(OutboxMessage.city_id).in_(list(city_ids)), OutboxMessage.status == OutboxStatus.failed)
        counts = self.session.exec(
            select(OutboxMessage.city_id, func.count(), func.max(OutboxMessage.id))
            .where(*failed)
            .group_by(OutboxMessage.city_id)
        ).all()
        if not counts:
            return {}  # the usual case: no second query for the errors
        latest = {row_id for _, _, row_id in counts}
        errors = dict(
            self.session.exec(
                select(OutboxMessage.id, OutboxMessage.last_error).where(col(OutboxMessage.id).in_(latest))
            ).all()
        )
        return {city_id: (count, errors.get(row_id)) for city_id, count, row_id in counts if city_id}

    def finish_all(self, outcomes: Sequence[Finished]) -> list[int]:
        """Record how sends ended, one statement for the rows that ended alike (sent, say); the ids of
        those not recorded. Only a row still under the claim its send was made in is written: one whose
        lease ran out before its outcome could be recorded (the database was away) may have been claimed
        by another deliverer since, and what that one does with it is what counts."""
        alike: dict[tuple[OutboxStatus, bool], list[dict[str, Any]]] = {}
        for outcome in outcomes:
            values: dict[str, Any] = {
                "row_id": outcome.outbox_id,
                "claimed": outcome.attempts,
                "new_status": outcome.status,
                "new_error": outcome.error,
            }
            if outcome.status == OutboxStatus.sent:
                values["new_sent_at"] = outcome.now
            if outcome.retry_at is not None:
                values["new_next"] = outcome.retry_at
            alike.setdefault((outcome.status, outcome.retry_at is not None), []).append(values)
        connection = self.session.connection()
        written = 0
        for (status, retry), rows in alike.items():
            written += connection.execute(
                _finish_statement(status == OutboxStatus.sent, retry), rows
            ).rowcount
        if written == len(outcomes):
            return []
        # A claim always counts an attempt, so a row claimed again since has attempts of its own.
        outbox = _OUTBOX.c
        ids = [outcome.outbox_id for outcome in outcomes]
        now_at = dict(
            connection.execute(core_select(outbox.id, outbox.attempts).where(outbox.id.in_(ids))).all()
        )
        return [
            outcome.outbox_id for outcome in outcomes if now_at.get(outcome.outbox_id) != outcome.attempts
        ]

    def outbox(self, city_ids: Sequence[int] | None = None) -> list[OutboxMessage]:
        query = select(OutboxMessage).order_by(OutboxMessage.due_at, OutboxMessage.id)
        if city_ids is not None:
            query = query.where(col(OutboxMessage.city_id).in_(list(city_ids)))
        return list(self.session.exec(query))

    # -- program calendar -----------------------------------------------------------------------
    def program_document(self) -> dict[str, Any] | None:
        query = select(ProgramCalendar).order_by(col(ProgramCalendar.id).desc()).limit(1)
        row = self.session.exec(query).first()
        return row.document if row else None

    def save_program(self, cohort: str, document: dict[str, Any], now: datetime) -> None:
        self.session.add(ProgramCalendar(cohort=cohort, document=document, loaded_at=now))
        self.session.flush()


def _insert(session: Session, table: Any) -> Any:
    return _dialect_insert(session.get_bind().dialect.name)(table)


def _dialect_insert(dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


_CITIES, _BINDINGS, _INBOX, _OUTBOX, _RECEIPTS, _REFERENCES, _PEOPLE = (
    model.__table__  # type: ignore[attr-defined]
    for model in (
        City,
        ChannelBinding,
        InboxMessage,
        OutboxMessage,
        OutboxReceipt,
        ConversationReference,
        Person,
    )
)
_BOUND_CITY = (
    core_select(*_CITIES.c)
    .select_from(_CITIES.join(_BINDINGS, _BINDINGS.c.city_id == _CITIES.c.id))
    .where(_BINDINGS.c.conversation == bindparam("conversation"))
)
_CITY_BY_SLUG = core_select(*_CITIES.c).where(_CITIES.c.slug == bindparam("ref"))
_CITIES_AS_LONG = (
    core_select(*_CITIES.c)
    .where(
        or_(
            func.length(_CITIES.c.name) == bindparam("length"),
            func.length(_CITIES.c.slug) == bindparam("length"),
        )
    )
    .order_by(_CITIES.c.name, _CITIES.c.id)
)
_UPDATE_IDS = "SELECT nextval(pg_get_serial_sequence('updates', 'id')) FROM generate_series(1, %s)"
_WRITE_UPDATES = (
    "INSERT INTO updates (id, city_id, author, text, platform, created_at) VALUES (%s, %s, %s, %s, %s, %s)"
)
_ADD_UPDATE = {  # by dialect: psycopg's parameter marks, and sqlite3's
    "postgresql": "INSERT INTO updates (city_id, author, text, platform, created_at) "
    "VALUES (%s, %s, %s, %s, %s) RETURNING id",
    "sqlite": "INSERT INTO updates (city_id, author, text, platform, created_at) "
    "VALUES (?, ?, ?, ?, ?) RETURNING id",
}
_DUE = (OutboxStatus.pending, OutboxStatus.sending)


def _waiting(platforms: Sequence[str]) -> Any:
    """Outbox rows for these platforms still to go out: pending, or claimed by a deliverer (whose lease
    may run out). Which of them are due is `next_attempt_at`'s to say."""
    return and_(_OUTBOX.c.status.in_(_DUE), _for_platforms(platforms))


def _replies_waiting(platforms: Sequence[str]) -> Any:
    """`_waiting`'s replies, in the words of their partial index (`REPLY_WAITING`), so it is used."""
    return and_(text(REPLY_WAITING), _for_platforms(platforms))


def _for_platforms(platforms: Sequence[str]) -> Any:
    return or_(*(_OUTBOX.c.recipient.startswith(f"{p}:") for p in platforms))


@cache
def _finish_statement(sent: bool, retry: bool) -> Any:
    """`finish_all`'s UPDATE with its values bound per row, for an executemany. On the table, not the ORM
    class: nothing loaded needs to learn of it, and the ORM's bookkeeping cost more than the statement."""
    values: dict[str, Any] = {"status": bindparam("new_status"), "last_error": bindparam("new_error")}
    if sent:  # what a platform reports next about it is news
        values.update(sent_at=bindparam("new_sent_at"), delivery=None, delivery_code=None)
    if retry:
        values["next_attempt_at"] = bindparam("new_next")
    still_claimed = (_OUTBOX.c.status == OutboxStatus.sending, _OUTBOX.c.attempts == bindparam("claimed"))
    return update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"), *still_claimed).values(**values)


@cache
def _upsert_reference(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_REFERENCES)
    return statement.on_conflict_do_update(
        index_elements=[_REFERENCES.c.key],
        set_={"reference": statement.excluded.reference, "updated_at": statement.excluded.updated_at},
    )


@cache
def _insert_ignoring(dialect: str, table: Any, returning: tuple[str, ...] = ()) -> Any:
    """INSERT leaving out a row whose unique key is taken, giving back the `returning` columns of those
    written. Built once per table: building the statement with its values cost more than running it.
    Given many rows, SQLAlchemy sends them as one multi-row INSERT ("insertmanyvalues")."""
    statement = _dialect_insert(dialect)(table).on_conflict_do_nothing()
    return statement.returning(*(table.c[name] for name in returning)) if returning else statement


@contextmanager
def open_store(engine: Engine) -> Iterator[Store]:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield Store(session)
