"""Conversations the bot can reach unprompted: a platform's reference is stored when the bot is
installed somewhere, refreshed as people speak, and marked gone when the bot is removed, so a message
for it fails for good with that reason instead of being retried."""

from datetime import datetime, timedelta
from typing import Any

from bot.core.messages import Reply
from store.models import OutboxMessage
from store.repo import Store

GONE = "cdaBotGone"  # set in a stored reference when the bot was removed from that conversation
WELCOME_KIND = "welcome"
WELCOME_EXPIRES = timedelta(days=1)  # a greeting a day late reads oddly: dropped instead


def gone_reason(reference: dict[str, Any]) -> str | None:
    """Why a conversation can no longer be written to, or None while it can."""
    gone = reference.get(GONE)
    if not gone:
        return None
    gone = gone if isinstance(gone, dict) else {}
    return f"{gone.get('reason', 'the bot was removed')} ({str(gone.get('at', ''))[:10]})"


def remember(store: Store, now: datetime, *, platform: str, key: str, reference: dict[str, Any]) -> None:
    """A way to reach `key` that the platform just gave (a personal chat it opened)."""
    store.save_reference(key, platform, reference, now)


def installed(
    store: Store,
    now: datetime,
    *,
    platform: str,
    conversation: str,
    person: str | None,
    reference: dict[str, Any],
    greeting: Reply | None,
    event_id: str,
) -> None:
    """The bot was added to `conversation` (a channel, a group chat, or `person`'s personal chat)."""
    store.save_reference(conversation, platform, reference, now)
    if person is not None:
        store.save_reference(person, platform, reference, now)
    if greeting is not None:
        store.enqueue(
            OutboxMessage(
                # The install event's id: the platform sending it again greets once.
                key=f"{WELCOME_KIND}|{platform}|{conversation}|{event_id}"[:400],
                recipient=conversation,
                kind=WELCOME_KIND,
                payload=greeting.model_dump(mode="json"),
                due_at=now,
                next_attempt_at=now,
                expires_at=now + WELCOME_EXPIRES,
                created_at=now,
            )
        )


def removed(
    store: Store, now: datetime, *, platform: str, keys: list[str], reference: dict[str, Any], reason: str
) -> None:
    """The bot was removed: what is queued for these conversations fails with `reason`."""
    for key in keys:
        known = store.reference(key) or reference
        store.save_reference(key, platform, {**known, GONE: {"at": now.isoformat(), "reason": reason}}, now)
