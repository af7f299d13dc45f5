"""Queries. A `Store` is one unit of work: everything done through it commits together or not at all."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from store.models import (
    Blocker,
    BlockerStatus,
    ChannelBinding,
    City,
    CoachCity,
    CoachingSession,
    ConversationReference,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedMessage,
    ProgramCalendar,
    Role,
    Update,
)


class Store:
    def __init__(self, session: Session) -> None:
        self.session = session

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
        """A city by slug or by name, ignoring case."""
        ref = ref.strip().lower()
        found = self.city_by_slug(ref)
        if found:
            return found
        return self.session.exec(select(City).where(func.lower(City.name) == ref)).first()

    def cities(self, ids: Sequence[int] | None = None) -> list[City]:
        query = select(City).order_by(City.name)
        if ids is not None:
            query = query.where(col(City.id).in_(list(ids)))
        return list(self.session.exec(query))

    # -- people ---------------------------------------------------------------------------------
    def person(self, identity: str) -> Person | None:
        return self.session.exec(select(Person).where(Person.identity == identity)).first()

    def people(self, identities: Sequence[str]) -> list[Person]:
        return list(self.session.exec(select(Person).where(col(Person.identity).in_(list(identities)))))

    def add_person(self, person: Person, coached_city_ids: Sequence[int] = ()) -> Person:
        self.session.add(person)
        self.session.flush()
        for city_id in coached_city_ids:
            self.session.add(CoachCity(person_id=person.id, city_id=city_id))
        self.session.flush()
        return person

    def coached_city_ids(self, person: Person) -> list[int]:
        if person.all_cities or person.role == Role.admin:
            return [c.id for c in self.cities() if c.id is not None]
        rows = self.session.exec(select(CoachCity.city_id).where(CoachCity.person_id == person.id))
        return list(rows)

    def coaches(self) -> list[Person]:
        return list(
            self.session.exec(select(Person).where(Person.role == Role.coach).order_by(Person.identity))
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
        query = select(City).join(ChannelBinding).where(ChannelBinding.conversation == conversation)
        return self.session.exec(query).first()

    def bindings_of(self, city_id: int) -> list[str]:
        query = select(ChannelBinding.conversation).where(ChannelBinding.city_id == city_id)
        return list(self.session.exec(query.order_by(ChannelBinding.conversation)))

    # -- processed platform messages ------------------------------------------------------------
    def mark_processed(self, platform: str, message_id: str, now: datetime) -> bool:
        """Record a platform message id; False if it was recorded before (a retry or a duplicate)."""
        return self._insert_once(ProcessedMessage(platform=platform, message_id=message_id, received_at=now))

    def _insert_once(self, row: SQLModel) -> bool:
        """Insert a row whose unique key may exist already (also in a concurrent transaction)."""
        nested = self.session.begin_nested()
        try:
            self.session.add(row)
            self.session.flush()
        except IntegrityError:
            nested.rollback()
            return False
        nested.commit()
        return True

    def forget_processed(self, before: datetime) -> int:
        """Drop message ids older than any platform retries (they only guard against repeats)."""
        result = self.session.execute(
            delete(ProcessedMessage).where(col(ProcessedMessage.received_at) < before)
        )
        return result.rowcount  # type: ignore[attr-defined, no-any-return]

    # -- updates --------------------------------------------------------------------------------
    def add_update(self, update: Update) -> Update:
        self.session.add(update)
        self.session.flush()
        return update

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
    def save_reference(self, key: str, platform: str, reference: dict[str, Any], now: datetime) -> None:
        row = self.session.exec(select(ConversationReference).where(ConversationReference.key == key)).first()
        if row is None:
            row = ConversationReference(key=key, platform=platform, reference=reference, updated_at=now)
        elif row.reference == reference:
            return
        row.reference = reference
        row.updated_at = now
        self.session.add(row)
        self.session.flush()

    def reference(self, key: str) -> dict[str, Any] | None:
        row = self.session.exec(select(ConversationReference).where(ConversationReference.key == key)).first()
        return row.reference if row else None

    # -- outbox ---------------------------------------------------------------------------------
    def enqueue(self, message: OutboxMessage) -> bool:
        """Plan a message once: False if one with the same key was planned before."""
        return self._insert_once(message)

    def outbox_has(self, key: str) -> bool:
        return bool(self.existing_keys([key]))

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these outbox keys were planned already (one query for a pass over a city)."""
        if not keys:
            return set()
        return set(self.session.exec(select(OutboxMessage.key).where(col(OutboxMessage.key).in_(list(keys)))))

    def claim_due(
        self, now: datetime, platforms: Sequence[str], lease: timedelta, limit: int = 100
    ) -> list[OutboxMessage]:
        """Take due rows for delivery: pending ones, and `sending` ones whose lease ran out (their
        deliverer died). PostgreSQL skips rows another deliverer has locked; SQLite has one writer."""
        if not platforms:
            return []
        due = (col(OutboxMessage.status) == OutboxStatus.pending) | (
            col(OutboxMessage.status) == OutboxStatus.sending
        )
        reachable = or_(*(col(OutboxMessage.recipient).startswith(f"{p}:") for p in platforms))
        query = (
            select(OutboxMessage)
            .where(due, reachable, OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = list(self.session.exec(query))
        for row in rows:
            row.status = OutboxStatus.sending
            row.attempts += 1
            row.next_attempt_at = now + lease
            self.session.add(row)
        self.session.flush()
        return rows

    def count_failed(self, city_id: int) -> int:
        query = (
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.city_id == city_id, OutboxMessage.status == OutboxStatus.failed)
        )
        return self.session.exec(query).one()

    def finish(
        self,
        message_id: int,
        status: OutboxStatus,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "last_error": error}
        if status == OutboxStatus.sent:
            values["sent_at"] = now
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        self.session.execute(
            update(OutboxMessage).where(col(OutboxMessage.id) == message_id).values(**values)
        )

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


@contextmanager
def open_store(engine: Engine) -> Iterator[Store]:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield Store(session)
