"""The tables. Instants are UTC (`UTCDateTime`); session start times are local to the city's zone."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint, text
from sqlalchemy.orm import configure_mappers
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime

MAX_TEXT = 8000
DEFAULT_REMINDER_OFFSETS = (24 * 60, 60)  # minutes before a session
DEFAULT_WORKING_DAYS = (0, 1, 2, 3, 4)  # Monday to Friday
NUDGE_AFTER_DAYS_MAX = 90  # the longest quiet stretch a city may be given before it is nudged


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Role(StrEnum):
    member = "member"
    coach = "coach"
    admin = "admin"


class Pathway(StrEnum):
    implementation = "implementation"
    capacity = "capacity"


class City(SQLModel, table=True):
    __tablename__ = "cities"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    zone: str = Field(max_length=64)
    country: str | None = Field(default=None, max_length=2)
    language: str = Field(default="en", max_length=5)
    pathway: str | None = Field(default=None, max_length=20)
    # What the scheduler sends this city; `cda-bot city set` changes them.
    reminder_offsets: list[int] = Field(
        default_factory=lambda: list(DEFAULT_REMINDER_OFFSETS),
        sa_column=Column(JSON, nullable=False, server_default=text("'[1440, 60]'")),
    )
    nudge_after_days: int = Field(default=7, sa_column_kwargs={"server_default": text("7")})
    nudge_hour: int = Field(default=10, sa_column_kwargs={"server_default": text("10")})
    working_days: list[int] = Field(
        default_factory=lambda: list(DEFAULT_WORKING_DAYS),
        sa_column=Column(JSON, nullable=False, server_default=text("'[0, 1, 2, 3, 4]'")),
    )
    quiet_start: int = Field(default=20, sa_column_kwargs={"server_default": text("20")})
    quiet_end: int = Field(default=8, sa_column_kwargs={"server_default": text("8")})
    stale_blocker_days: int = Field(default=14, sa_column_kwargs={"server_default": text("14")})
    created_at: datetime = utc_column()
    plan_at: datetime | None = utc_column(nullable=True, index=True)  # the scheduler's agenda (0007)
    # Left the program (`cda-bot city archive`): nothing planned for it or about it, out of coaches'
    # views of all their cities; its history stays.
    archived_at: datetime | None = utc_column(nullable=True)


# A city that has not left the program, as a statement's condition.
IN_PROGRAM = City.__table__.c.archived_at.is_(None)  # type: ignore[attr-defined]


class Person(SQLModel, table=True):
    """A member (of one city), a coach (of listed cities, or all) or an admin."""

    __tablename__ = "people"

    id: int | None = Field(default=None, primary_key=True)
    identity: str = Field(max_length=200, unique=True)
    name: str | None = Field(default=None, max_length=200)
    role: str = Field(max_length=10)
    city_id: int | None = Field(default=None, foreign_key="cities.id", index=True)
    all_cities: bool = Field(default=False)
    zone: str | None = Field(default=None, max_length=64)  # a coach's own zone, for the weekly digest
    # Set when the person said `stop`: nothing unprompted (reminders, nudges, digests, notices) goes to
    # them until they say `start`; replies to what they say still do.
    stopped_at: datetime | None = utc_column(nullable=True)
    created_at: datetime = utc_column()
    plan_at: datetime | None = utc_column(nullable=True, index=True)  # a coach's next digest (0007)


class OptOut(SQLModel, table=True):
    """A `stop` kept for someone taken off the roster: it belongs to the person, not to a roster row,
    so being added back (to another city, as a coach, by a join code) does not turn their reminders
    on again; it goes back on their new row then."""

    __tablename__ = "opt_outs"

    identity: str = Field(max_length=200, primary_key=True)
    stopped_at: datetime = utc_column()


class CoachCity(SQLModel, table=True):
    __tablename__ = "coach_cities"

    person_id: int = Field(foreign_key="people.id", primary_key=True)
    city_id: int = Field(foreign_key="cities.id", primary_key=True, index=True)


class JoinCode(SQLModel, table=True):
    """A code an admin hands a city team: `join CODE` from a WhatsApp number puts it on the roster."""

    __tablename__ = "join_codes"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    city_id: int = Field(foreign_key="cities.id", index=True)
    expires_at: datetime = utc_column()
    max_uses: int | None = Field(default=None)  # None: any number of people until it expires
    uses: int = Field(default=0)
    revoked_at: datetime | None = utc_column(nullable=True)
    created_at: datetime = utc_column()


class ChannelBinding(SQLModel, table=True):
    """A conversation (Slack channel, Teams conversation, WhatsApp group) that belongs to a city."""

    __tablename__ = "channel_bindings"

    id: int | None = Field(default=None, primary_key=True)
    conversation: str = Field(max_length=200, unique=True)
    city_id: int = Field(foreign_key="cities.id", index=True)
    created_at: datetime = utc_column()


class Update(SQLModel, table=True):
    __tablename__ = "updates"
    __table_args__ = (Index("ix_updates_city_created", "city_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    city_id: int = Field(foreign_key="cities.id")
    author: str = Field(max_length=200)
    text: str = Field(max_length=MAX_TEXT)
    platform: str = Field(max_length=20)
    created_at: datetime = utc_column()


class BlockerStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class Blocker(SQLModel, table=True):
    __tablename__ = "blockers"
    __table_args__ = (Index("ix_blockers_city_status_opened", "city_id", "status", "opened_at"),)

    id: int | None = Field(default=None, primary_key=True)
    city_id: int = Field(foreign_key="cities.id")
    author: str = Field(max_length=200)
    text: str = Field(max_length=MAX_TEXT)
    status: str = Field(default=BlockerStatus.open, max_length=10)
    opened_at: datetime = utc_column()
    resolved_at: datetime | None = utc_column(nullable=True)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolution_note: str | None = Field(default=None, max_length=MAX_TEXT)


class CoachingSession(SQLModel, table=True):
    """A one-off or recurring session. `start_local` is wall-clock time in the city's zone, so a
    weekly 10:00 session stays at 10:00 across daylight-saving changes."""

    __tablename__ = "coaching_sessions"
    # A calendar UID names one session within a city; the same file may be imported into several cities.
    __table_args__ = (UniqueConstraint("city_id", "uid", name="uq_sessions_city_uid"),)

    id: int | None = Field(default=None, primary_key=True)
    city_id: int = Field(foreign_key="cities.id", index=True)
    title: str = Field(default="Coaching session", max_length=200)
    start_local: datetime = Field(sa_column=Column(DateTime(), nullable=False))
    duration_min: int = Field(default=60)
    rrule: str | None = Field(default=None, max_length=500)
    until_local: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))
    exdates: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    uid: str | None = Field(default=None, max_length=255)
    created_at: datetime = utc_column()


class ConversationReference(SQLModel, table=True):
    """What an adapter needs to message someone unprompted (Teams service URL, Slack channel, …)."""

    __tablename__ = "conversation_references"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    platform: str = Field(max_length=20)
    reference: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = utc_column()


class InboxStatus(StrEnum):
    pending = "pending"  # acknowledged to the platform, not yet handled
    done = "done"
    failed = "failed"  # handling raised; the sender was told


class InboxMessage(SQLModel, table=True):
    """A platform message, stored before the platform is acknowledged: the unique (platform, message_id)
    drops retries and duplicates, and a pending row survives a crash until some replica handles it."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("platform", "message_id", name="uq_inbox_platform_message"),
        Index("ix_inbox_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    message_id: str = Field(max_length=200)
    # The message as the core reads it; cleared once handled, so the text is kept in one place only.
    message: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = Field(default=InboxStatus.pending, max_length=10)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = utc_column()
    last_error: str | None = Field(default=None, max_length=1000)
    received_at: datetime = utc_column(index=True)
    handled_at: datetime | None = utc_column(nullable=True)


class OutboxStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    dropped = "dropped"


# Why a message planned for a city is not sent once the city is archived (`cda-bot city archive`).
LEFT_PROGRAM = "its city left the program"
REPLY_KIND = "reply"  # an outbox row answering a message: someone is waiting for it
STALE_KIND = "blocker_stale"  # coaches told of a blocker open too long: once, while it stays open


REMINDER_KIND = "reminder-"  # and the lead in minutes: `reminder-60`


def reminder_key(recipient: str, kind: str, session_id: int, start: datetime) -> str:
    """The outbox key of a reminder of the session's occurrence at `start` (UTC)."""
    return f"{recipient}|{kind}|{session_id}@{start:%Y-%m-%dT%H:%MZ}"


def reminded(key: str) -> tuple[int, datetime] | None:
    """The session and start (UTC, to the minute) a reminder's key names; None for a key not made by
    `reminder_key` (a row written by hand), which is then sent as it is rather than stop its lane."""
    session, _at, start = key.rpartition("|")[2].partition("@")
    try:
        return int(session), datetime.strptime(start, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def stale_key(coach: str, blocker_id: int) -> str:
    """The outbox key of the notice telling `coach` of a blocker open too long. It ends in the blocker's
    id: the pass that forgets old rows looks for the blocker there (store/agenda.py, forget_sent)."""
    return f"{coach}|{STALE_KIND}|{blocker_id}"


# Replies still to go, as a claim asks for them first (0009). Literal, not bound, in the index and in the
# claim alike: SQLite uses a partial index only for a query whose terms match its own; and the index's
# columns repeat them, so that SQLite, without statistics, prefers it to the status index.
REPLY_WAITING = f"kind = '{REPLY_KIND}' AND status IN ('pending', 'sending')"


class OutboxMessage(SQLModel, table=True):
    """A message to send unprompted. `key` (recipient, kind, occurrence) makes planning idempotent."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_status_expires", "status", "expires_at"),
        Index("ix_outbox_city_status", "city_id", "status"),
        Index(
            "ix_outbox_replies_waiting",
            "kind",
            "status",
            "next_attempt_at",
            sqlite_where=text(REPLY_WAITING),
            postgresql_where=text(REPLY_WAITING),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True)
    recipient: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    # Found by `ix_outbox_city_status`, which begins with it (a second index would slow every insert).
    city_id: int | None = Field(default=None, foreign_key="cities.id")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=OutboxStatus.pending, max_length=10)
    attempts: int = Field(default=0)
    due_at: datetime = utc_column()
    expires_at: datetime | None = utc_column(nullable=True)
    next_attempt_at: datetime = utc_column()
    last_error: str | None = Field(default=None, max_length=1000)
    # Where a reply goes within the platform (thread, response URL), as its adapter described it.
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    sent_at: datetime | None = utc_column(nullable=True)
    # What the platform reported after the send (delivered, read, undelivered, failed) and its error code.
    delivery: str | None = Field(default=None, max_length=20)
    delivery_code: str | None = Field(default=None, max_length=20)
    created_at: datetime = utc_column()


class OutboxReceipt(SQLModel, table=True):
    """The platform's id of each message a row went out as (a long WhatsApp reply is several), so a
    delivery status reported later finds its row."""

    __tablename__ = "outbox_receipts"
    __table_args__ = (UniqueConstraint("platform", "platform_id", name="uq_receipts_platform_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    platform_id: str = Field(max_length=200)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    part: int = Field(default=1)
    created_at: datetime = utc_column()


class ProgramCalendar(SQLModel, table=True):
    """A loaded program calendar; the newest row is the one in force."""

    __tablename__ = "program_calendars"

    id: int | None = Field(default=None, primary_key=True)
    cohort: str = Field(max_length=100)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    loaded_at: datetime = utc_column()


class DashboardSecret(SQLModel, table=True):
    """The key that signs the coaches' page links, made on first use when DASHBOARD_SECRET is not set:
    kept in the database so that every replica signs and checks with the same one."""

    __tablename__ = "dashboard_secrets"

    name: str = Field(max_length=40, primary_key=True)
    value: str = Field(max_length=200)
    created_at: datetime = utc_column()


class DashboardLink(SQLModel, table=True):
    """A one-time sign-in link `/cda dashboard` gave someone; `used_at` makes it single-use."""

    __tablename__ = "dashboard_links"

    id: int | None = Field(default=None, primary_key=True)
    nonce: str = Field(max_length=64, unique=True)
    identity: str = Field(max_length=200, index=True)
    language: str = Field(default="en", max_length=5)
    created_at: datetime = utc_column()
    expires_at: datetime = utc_column()
    used_at: datetime | None = utc_column(nullable=True)


class DashboardSession(SQLModel, table=True):
    """A browser signed in to the coaches' page. Only a hash of the cookie is kept, so a copy of the
    database opens no session."""

    __tablename__ = "dashboard_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    identity: str = Field(max_length=200, index=True)
    language: str = Field(default="en", max_length=5)
    created_at: datetime = utc_column()
    expires_at: datetime = utc_column()
    revoked_at: datetime | None = utc_column(nullable=True)


# Registered on the same metadata so migrations, tests and truncation see every table.
import store.slack_oauth_tables  # noqa: E402, F401

# Mappers are otherwise set up by the first ORM query. Rows the hot paths build without the ORM
# (`model_construct` in store/repo.py and store/views.py) need them too, and may come first in a process
# (a delivery process claims before it queries anything else).
configure_mappers()
