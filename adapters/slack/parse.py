"""Slack payloads in, `InboundMessage` out: events, the `/cda` slash command and the Resolve button.

Only translation lives here; which messages matter and what they mean is the core's business."""

import html
import re
from datetime import datetime, timedelta
from typing import Any

from bot.core.messages import InboundMessage

PLATFORM = "slack"
RESOLVE_ACTION = "resolve_blocker"
# Subtypes that are still a person saying something; edits, joins, deletions and the like are not.
SPOKEN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
# Slack's markup in message text: `<target>` or `<target|label>`. A literal < or > arrives escaped.
_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|mailto:)", re.IGNORECASE)


class PayloadError(ValueError):
    """A signed body that is not a Slack payload we can read."""


RESPONSE_URL_LIFETIME = timedelta(minutes=30)  # Slack's own limit on a response URL
MAX_MEDIA = 10  # a Slack message carries at most 10 files
MAX_MEDIA_CHARS = 500


def identity(team_id: str, slack_id: str) -> str:
    return f"{PLATFORM}:{team_id.upper()}:{slack_id.upper()}"


def _plain(text: str) -> str:
    # Slack escapes &, < and > in message text; the core stores what the person typed.
    return html.unescape(text)


def _typed(markup: re.Match[str]) -> str:
    """One piece of Slack markup as the person typed it: a link as its address (or its words, then
    the address), `<#C…|name>` as #name, `<!here>` as @here. A person (`<@U…>`) stays an id: their
    name is not in the message, and an id still says who was meant."""
    target, label = markup.group(1), markup.group(2)
    if target.startswith(("@", "#")):
        return f"{target[0]}{label}" if label else markup.group(0)
    if target.startswith("!"):
        special = target[1:].split("^")[0]
        if label:  # a user group's @handle, a date's fallback
            return label
        return f"@{special}" if special in ("here", "channel", "everyone") else markup.group(0)
    if label is None or label in (target, _SCHEME.sub("", target)):
        return label or target  # Slack linked what was typed: a bare address, a domain, an e-mail
    return f"{label} ({target})"


def _as_typed(text: str) -> str:
    """Message text as the person typed it: Slack's markup read, then its escapes undone (in that
    order, so an escaped `&lt;…&gt;` the person typed is never taken for markup)."""
    return _plain(_MARKUP.sub(_typed, text))


def from_event(body: dict[str, Any], bot_user_id: str | None, received_at: datetime) -> InboundMessage | None:
    """A `message` or `app_mention` event as an inbound message; None for what the bot must not answer."""
    event = body.get("event") or {}
    kind = event.get("type")
    user = event.get("user")
    channel = event.get("channel")
    team_id = body.get("team_id") or event.get("team")
    if kind not in ("message", "app_mention") or not user or not channel or not team_id:
        return None
    if event.get("bot_id") or event.get("subtype") == "bot_message" or user == bot_user_id:
        return None
    if event.get("subtype") not in SPOKEN_SUBTYPES:
        return None
    text = event.get("text") or ""
    direct = event.get("channel_type") == "im" or str(channel).startswith("D")
    mentioned = bot_user_id is not None and any(m == bot_user_id for m in _MENTION.findall(text))
    if kind == "message" and mentioned and not direct:
        return None  # Slack sends the same words as `app_mention` too; that one is answered
    if bot_user_id is not None:
        text = _MENTION.sub(lambda m: "" if m.group(1) == bot_user_id else m.group(0), text)
    ts = event.get("ts")
    return InboundMessage(
        platform=PLATFORM,
        message_id=str(body.get("event_id") or f"{channel}:{ts}"),
        conversation=identity(team_id, channel),
        sender=identity(event.get("user_team") or team_id, user),
        text=_as_typed(text).strip(),
        received_at=received_at,
        media=_media(event),
        reference={"channel": channel, "team_id": team_id},
        # In a channel the answer goes in the message's thread; in a DM, below it.
        reply_context={
            "channel": channel,
            "thread_ts": event.get("thread_ts") or (None if direct else ts),
            "message_ts": ts,
        },
        direct=direct,
        private=direct,
        # Said in a channel without addressing the bot: only commands and questions in a bound
        # channel are the bot's business (the core decides).
        addressed=kind == "app_mention" or direct,
    )


def _media(event: dict[str, Any]) -> list[str]:
    """The files shared with the message (a `file_share`), which the bot does not read: the core says
    so, rather than take a file alone for an empty message. Read with care: the gate does not look at
    `files`."""
    files = event.get("files")
    if not isinstance(files, list):
        return []
    found = [str(f.get("url_private") or f.get("id") or "file") for f in files if isinstance(f, dict)]
    return [url[:MAX_MEDIA_CHARS] for url in found[:MAX_MEDIA]]


def from_command(body: dict[str, Any], received_at: datetime) -> InboundMessage:
    """`/cda <text>` becomes the text `/cda <text>` from the person who typed it; only they see the
    command, so the answers are theirs alone, through its response URL."""
    try:
        team_id, user, channel = body["team_id"], body["user_id"], body["channel_id"]
    except KeyError as missing:
        raise PayloadError(f"slash command without {missing.args[0]}") from None
    words = (body.get("text") or "").strip()
    response_url = body.get("response_url")
    return InboundMessage(
        platform=PLATFORM,
        # Slack never retries a slash command, and each invocation has its own trigger id.
        message_id=str(body.get("trigger_id") or f"command:{channel}:{user}:{received_at.timestamp()}"),
        conversation=identity(team_id, channel),
        sender=identity(team_id, user),
        text=f"/cda {_plain(words)}".strip(),
        received_at=received_at,
        reply_context={"channel": channel, "user": user, "response_url": response_url},
        reply_expires_at=received_at + RESPONSE_URL_LIFETIME if response_url else None,
        direct=str(channel).startswith("D"),
        private=True,
    )


def from_action(body: dict[str, Any], action: dict[str, Any], received_at: datetime) -> InboundMessage:
    """A click on a Resolve button is the clicker saying `/cda resolve <id>`; only they see it."""
    user = body.get("user") or {}
    team_id = (body.get("team") or {}).get("id") or user.get("team_id")
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    if not team_id or not user.get("id") or not channel:
        raise PayloadError("block action without team, user or channel")
    if not str(action.get("action_id", "")).startswith(RESOLVE_ACTION):
        raise PayloadError(f"unknown action {action.get('action_id')!r}")
    value = str(action.get("value") or "").strip()
    message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    direct = str(channel).startswith("D")
    return InboundMessage(
        platform=PLATFORM,
        message_id=str(body.get("trigger_id") or f"action:{user['id']}:{action.get('action_ts')}"),
        conversation=identity(team_id, channel),
        sender=identity(team_id, user["id"]),
        text=f"/cda resolve {value}",
        received_at=received_at,
        # In the DM where the notice was, the answer goes in its thread; elsewhere, to the clicker only.
        reply_context={"channel": channel, "thread_ts": message_ts}
        if direct
        else {"channel": channel, "user": user["id"], "response_url": body.get("response_url")},
        direct=direct,
        private=True,
    )
