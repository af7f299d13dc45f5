"""The durable inbox: a message is stored before its platform is acknowledged, then handled once.

`accept` is the only database work before the acknowledgement: one insert, whose unique key drops
retries and duplicates. `handle` runs the dispatcher and writes the message's effects and its replies
(to the outbox) in one transaction with the row's `done`, so a crash at any point leaves the message
either pending (handled again, by this process or another replica) or fully handled, never half."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.core.dispatcher import command_of, dispatch, dispatch_all, failure_notice
from bot.core.identity import platform_of
from bot.core.messages import RECORDED, InboundMessage, Outgoing, Reply
from handlers.welcome import JOIN_HINT
from store import bulk
from store.db import is_transient
from store.models import REPLY_KIND, InboxMessage, InboxStatus, OutboxMessage, OutboxStatus
from store.repo import Store, open_store

log = logging.getLogger("cda_bot.inbox")

# A fresh message is handled by the process that accepted it; other replicas look at it only after
# this long, when that process has probably died.
HANDOFF = timedelta(seconds=30)
# Platforms where anyone can write to the bot's number: nothing is stored from a sender until an admin
# has put them on a roster (the spec's rule for WhatsApp).
ROSTER_FIRST = frozenset({"whatsapp"})
JOIN_HINT_EXPIRES = timedelta(hours=1)
RECORDED_REPLY_LIFETIME = timedelta(days=1)


@dataclass
class Accepted:
    inbox_id: int | None  # the message to handle; None when there is nothing to handle
    new: bool
    answered: list[Outgoing] = field(default_factory=list)  # said at once instead (in the outbox)


def accept(store: Store, msg: InboundMessage, now: datetime) -> Accepted:
    """Store `msg` for handling. A duplicate of a message still pending gives its id, so a platform's
    retry of a message that was stored but never handled is not left waiting; chatter the bot keeps
    out of is not stored, nor anything from a sender who must be on a roster first."""
    return accept_all(store, [msg], now)[0]


def accept_all(store: Store, messages: list[InboundMessage], now: datetime) -> list[Accepted]:
    """`accept` for the messages of one group commit, in their order, with a few statements for all of
    them where one each would do: which channels are bound, who is on a roster, the inserts, the
    duplicates' ids."""
    concern = [m for m in messages if not m.addressed and _command_or_question(m)]
    bound = store.bound_conversations([m.conversation for m in concern])
    rostered = store.on_roster([m.sender for m in messages if m.platform in ROSTER_FIRST])
    decided: list[Accepted | None] = []  # None: to be stored below
    rows: list[dict[str, Any]] = []
    for msg in messages:
        if not msg.addressed and (msg.conversation not in bound or not _command_or_question(msg)):
            decided.append(Accepted(None, False))
        elif msg.platform in ROSTER_FIRST and msg.sender not in rostered and not _joins(msg):
            decided.append(Accepted(None, False, _tell_how_to_join(store, msg, now)))
        else:
            decided.append(None)
            rows.append(_inbox_row(msg, now))
    stored = store.receive_all(rows)
    # A retry of a message stored before and still pending is not left waiting: its id is handed on.
    earlier = store.inbox_ids([key for key in _keys(rows) if key not in stored], InboxStatus.pending)
    fresh = dict(stored)  # the first of a message sent twice in one batch is the new one
    keys = iter(_keys(rows))
    accepted: list[Accepted] = []
    for result in decided:
        if result is None:
            key = next(keys)
            if key in fresh:
                result = Accepted(fresh.pop(key), True)
            else:
                log.info("duplicate dropped", extra={"platform": key[0], "message_id": key[1]})
                result = Accepted(earlier.get(key, stored.get(key)), False)
        accepted.append(result)
    return accepted


def _keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row["platform"], row["message_id"]) for row in rows]


def _inbox_row(msg: InboundMessage, now: datetime) -> dict[str, Any]:
    return {
        "platform": msg.platform,
        "message_id": msg.message_id,
        "message": msg.model_dump(mode="json"),
        "status": InboxStatus.pending,
        "attempts": 0,
        "next_attempt_at": now + HANDOFF,
        "received_at": now,
    }


def _tell_how_to_join(store: Store, msg: InboundMessage, now: datetime) -> list[Outgoing]:
    """Once a day at most, so a stranger's messages cost one reply; nothing they sent is kept."""
    log.info("message from a number not on the roster", extra={"platform": msg.platform})
    # The hint goes with how to reach the number (its reference: on WhatsApp, when it last wrote), not
    # the message's reply context, which may carry what it sent (a photo's URL, readable by whoever
    # holds it) and would be kept on the outbox row.
    hint = Outgoing(recipient=msg.sender, reply=Reply(text=JOIN_HINT), context=msg.reference)
    queued = store.enqueue(
        OutboxMessage(
            key=f"{REPLY_KIND}|{msg.platform}|join|{msg.sender}|{now.date().isoformat()}",
            recipient=hint.recipient,
            kind=REPLY_KIND,
            payload=hint.reply.model_dump(mode="json"),
            context=hint.context,
            due_at=now,
            next_attempt_at=now,
            expires_at=now + JOIN_HINT_EXPIRES,
            created_at=now,
        )
    )
    return [hint] if queued else []


def _joins(msg: InboundMessage) -> bool:
    """`join CODE`: the one thing a number on no roster may say that is stored (and handled)."""
    return command_of(msg).name == "join"


def _command_or_question(msg: InboundMessage) -> bool:
    """Of chatter in a shared channel, only this concerns the bot (and only in a channel bound to a city)."""
    return command_of(msg, addressed=False).name not in ("unknown", "empty")


def handle(store: Store, inbox_id: int, now: datetime) -> list[Outgoing] | None:
    """Handle a pending message in the caller's transaction; None if it is not (or no longer) pending."""
    row = store.take_inbox(inbox_id)
    if row is None or row.message is None:
        return None
    msg = InboundMessage.model_validate(row.message)
    outgoing = _answer(store, msg, now)
    _enqueue_replies(store, msg, outgoing, now)
    _close(store, row, InboxStatus.done, now)
    return outgoing


def _answer(store: Store, msg: InboundMessage, now: datetime) -> list[Outgoing]:
    """What a message causes, in the caller's transaction, and the replies to it."""
    if msg.reference is not None:
        store.save_reference(msg.conversation, msg.platform, msg.reference, now)
        if msg.direct and msg.sender != msg.conversation:
            store.save_reference(msg.sender, msg.platform, msg.reference, now)
    # Never over a personal chat already known (or a removal): only where there is nothing yet.
    if msg.sender_reference is not None and store.reference(msg.sender) is None:
        store.save_reference(msg.sender, msg.platform, msg.sender_reference, now)
    return dispatch(store, msg, now)


@dataclass(frozen=True)
class Claiming:
    """Replies to these platforms are written as claimed, for `lease` from when they are handled, by
    the deliverer of the process that handles them: it sends them once their transaction commits,
    without claiming them first (a write of its own, and on SQLite a turn the platforms'
    acknowledgements wait behind)."""

    platforms: frozenset[str]
    lease: timedelta


@dataclass(frozen=True)
class Handled:
    claimed: list[OutboxMessage]  # replies written as claimed (`Claiming`): the caller sends them
    waiting: int  # outbox rows written for whichever deliverer claims them


def handle_all(
    store: Store, inbox_ids: list[int], now: datetime, claiming: Claiming | None = None
) -> Handled:
    """`handle` for many messages in the caller's transaction, with a few statements for all of them
    where one each would do (the rows, the references, marking them done). All or nothing: on an
    error the caller handles them one by one, to find the one that fails."""
    taken = store.take_inboxes(inbox_ids)
    messages = [InboundMessage.model_validate(message) for _, message in taken]
    _remember(store, messages, now)
    answers = zip(messages, dispatch_all(store, messages, now), strict=True)
    replies = [row for msg, out in answers for row in _reply_rows(msg, out, now, False)]
    for row in replies:
        if claiming is not None and platform_of(row["recipient"]) in claiming.platforms:
            row.update(status=OutboxStatus.sending, attempts=1, next_attempt_at=now + claiming.lease)
    columns = list(replies[0]) if replies else []
    written = dict(bulk.insert_returning(store, "outbox", columns, replies, ("key", "id")))
    claimed = [
        OutboxMessage.model_construct(id=written[row["key"]], **row)
        for row in replies
        if row["key"] in written and row["status"] == OutboxStatus.sending
    ]
    waiting = len(written) - len(claimed)
    store.close_inboxes([inbox_id for inbox_id, _ in taken], now)
    return Handled(claimed, waiting + store.planned)


def _remember(store: Store, messages: list[InboundMessage], now: datetime) -> None:
    """Keep how to reach each conversation (and a direct message's sender), writing only what changed:
    the same channel's reference arrives with every message."""
    wanted: dict[str, tuple[str, dict[str, Any]]] = {}
    first_contact: dict[str, tuple[str, dict[str, Any]]] = {}
    for msg in messages:
        if msg.reference is not None:
            wanted[msg.conversation] = (msg.platform, msg.reference)
            if msg.direct:
                wanted[msg.sender] = (msg.platform, msg.reference)
        if msg.sender_reference is not None:
            first_contact.setdefault(msg.sender, (msg.platform, msg.sender_reference))
    if not wanted and not first_contact:
        return
    known = store.references([*wanted, *first_contact])
    changed = [(key, platform, ref) for key, (platform, ref) in wanted.items() if known.get(key) != ref]
    # Never over a personal chat already known (or a removal): only where there is nothing yet.
    changed += [
        (key, platform, ref)
        for key, (platform, ref) in first_contact.items()
        if key not in known and key not in wanted
    ]
    store.save_references(changed, now)


def fail(store: Store, inbox_id: int, error: str, now: datetime) -> list[Outgoing]:
    """Give up on a message whose handling raised: mark it failed and tell the sender, once."""
    row = store.take_inbox(inbox_id)
    if row is None or row.message is None:
        return []
    msg = InboundMessage.model_validate(row.message)
    outgoing = failure_notice(store, msg)
    _enqueue_replies(store, msg, outgoing, now)
    row.last_error = error[:1000]
    row.attempts += 1
    _close(store, row, InboxStatus.failed, now, keep_message=True)
    return outgoing


def handle_or_fail(engine: Engine, inbox_id: int, now: datetime) -> list[Outgoing]:
    """`handle` in its own transaction; on an error that is not the database's, `fail`. A database that
    cannot be reached leaves the message pending, and the error is raised."""
    try:
        with open_store(engine) as store:
            return handle(store, inbox_id, now) or []
    except Exception as error:
        if is_transient(error):
            raise
        log.exception("handling failed", extra={"inbox_id": inbox_id})
        with open_store(engine) as store:
            return fail(store, inbox_id, f"{type(error).__name__}: {error}", now)


def _enqueue_replies(
    store: Store, msg: InboundMessage, outgoing: list[Outgoing], now: datetime, shown: bool = False
) -> None:
    for row in _reply_rows(msg, outgoing, now, shown):
        store.enqueue(OutboxMessage(**row))


def _reply_rows(
    msg: InboundMessage, outgoing: list[Outgoing], now: datetime, shown: bool
) -> list[dict[str, Any]]:
    """The outbox rows of the replies; `shown` ones (returned in-process) are written as sent."""
    return [
        {
            "key": _reply_key(msg, index),
            "recipient": out.recipient,
            "kind": REPLY_KIND,
            "city_id": out.reply.about[0] if len(out.reply.about) == 1 else None,
            "payload": out.reply.model_dump(mode="json"),
            "context": out.context,
            "status": OutboxStatus.sent if shown else OutboxStatus.pending,
            "attempts": 0,
            "due_at": now,
            "next_attempt_at": now,
            "expires_at": _expires(msg, out.reply),
            "sent_at": now if shown else None,
            "created_at": now,
        }
        for index, out in enumerate(outgoing)
    ]


def _expires(msg: InboundMessage, reply: Reply) -> datetime | None:
    """When the reply is no longer worth giving: the platform's own limit (a Slack response URL's 30
    minutes), but a day for one saying what was recorded. Should the server have been down that long,
    the person still learns their update is in, rather than send it again; the adapter takes it
    another way (Slack: the person's DM) when the original one is spent."""
    if msg.reply_expires_at is None or reply.kind not in RECORDED:
        return msg.reply_expires_at
    return max(msg.reply_expires_at, msg.received_at + RECORDED_REPLY_LIFETIME)


def _reply_key(msg: InboundMessage, index: int) -> str:
    return f"{_reply_prefix(msg.platform, msg.message_id)}{index}"


def _reply_prefix(platform: str, message_id: str) -> str:
    return f"{REPLY_KIND}|{platform}|{message_id}|"


def reclaim_replies(
    store: Store, inbox_ids: list[int], leases: list[datetime], until: datetime
) -> list[OutboxMessage]:
    """The replies to these messages that a handling wrote as claimed under one of `leases`, in a
    transaction whose commit was not confirmed (the connection broke at COMMIT, and it did commit),
    leased again until `until`, for the caller to send: found, they need not wait out their lease."""
    prefixes = [_reply_prefix(platform, message) for platform, message in store.inbox_sources(inbox_ids)]
    return store.reclaim(prefixes, leases, until)


def _close(
    store: Store, row: InboxMessage, status: InboxStatus, now: datetime, keep_message: bool = False
) -> None:
    row.status = status
    row.handled_at = now
    if not keep_message:
        row.message = None  # what it said now lives in updates and blockers, not twice
    store.session.add(row)
    store.session.flush()


class Dispatcher:
    """The message path in one call, for the terminal and tests: store the message, handle it, and
    return the replies, which count as delivered (they are shown at once, on whatever platform the
    speaker is named for, and never sent there)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def handle(self, msg: InboundMessage) -> list[Reply]:
        return [o.reply for o in self.handle_addressed(msg)]

    def handle_addressed(self, msg: InboundMessage) -> list[Outgoing]:
        now = self.clock.now()
        outgoing = self._at_once(msg, now)
        if outgoing is None:
            outgoing = self._durably(msg, now)
        return [o.model_copy(update={"reply": o.reply.rendered(now)}) for o in outgoing]

    def _at_once(self, msg: InboundMessage, now: datetime) -> list[Outgoing] | None:
        """The message stored (as handled), handled, and its replies written (as shown) in one
        transaction instead of three: it is still stored before it is answered, since the answer is
        returned only once that transaction has committed. None where the three-step path must
        decide: a duplicate, a message that may not be stored, a handler that raised (rolled back
        whole, then handled again there, which records the failure). A database that cannot be
        reached raises, with nothing stored."""
        try:
            with open_store(self.engine) as store:
                if not msg.addressed or msg.platform in ROSTER_FIRST:
                    raise _Durably  # what is stored, if anything, is `accept`'s to decide
                # Handled in this very transaction: stored as done, with nothing left to hand off.
                # Both rows are written without the ORM, whose work per row was most of the path's.
                row = {
                    "platform": msg.platform,
                    "message_id": msg.message_id,
                    "status": InboxStatus.done,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "received_at": now,
                    "handled_at": now,
                }
                if not bulk.insert_ignoring(store, "inbox", list(row), [row]):
                    raise _Durably  # a duplicate
                outgoing = _answer(store, msg, now)
                rows = _reply_rows(msg, outgoing, now, shown=True)
                bulk.insert_ignoring(store, "outbox", list(rows[0]) if rows else [], rows)
                return outgoing
        except _Durably:
            return None
        except Exception as error:
            if is_transient(error):
                raise
            return None  # the three-step path handles it again and records the failure

    def _durably(self, msg: InboundMessage, now: datetime) -> list[Outgoing]:
        with open_store(self.engine) as store:
            accepted = accept(store, msg, now)
        if accepted.inbox_id is None:
            outgoing = accepted.answered
        else:
            outgoing = handle_or_fail(self.engine, accepted.inbox_id, now)
        with open_store(self.engine) as store:
            store.settle(_reply_prefix(msg.platform, msg.message_id), now)
        return outgoing


class _Durably(Exception):
    """Leave the one-transaction path for the three-step one."""
