"""Bot Framework activities in, `InboundMessage` out: messages, Adaptive Card submits, and the bot being
installed or removed. Only translation lives here; what a message means is the core's business.

Identities: `teams:<tenant>:<aadObjectId>` for people, `teams:<tenant>:<conversation id>` for
conversations, the id without the `;messageid=…` that marks a channel thread. Conversation references
are the protocol's own camelCase JSON (the Agents SDK's `ConversationReference`), so that any SDK, or
none, can use them later."""

import contextlib
import hashlib
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from microsoft_agents.activity import Activity, ConversationReference
from pydantic import ValidationError

from bot.core.identity import IdentityError, normalize_identity
from bot.core.messages import InboundMessage

PLATFORM = "teams"
LOCAL_TENANT = "local"  # the Emulator and the Playground name no tenant
# What an Adaptive Card's Action.Submit sends back as the activity's `value`: {ACTION_KEY: …, VALUE_KEY: …}.
ACTION_KEY = "cdaAction"
VALUE_KEY = "value"
RESOLVE_ACTION = "resolve_blocker"
MAX_ACTION_VALUE = 40
# Attachments that are no picture or file: the HTML copy of a message's text, cards (link previews).
_NOT_MEDIA = ("text/html", "application/vnd.microsoft.card.")
MAX_MEDIA, MAX_MEDIA_CHARS = 10, 500
_THREAD = re.compile(r";messageid=.*$", re.IGNORECASE)
_AT = re.compile(r"<at[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_TENANT = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")


class PayloadError(ValueError):
    """A body that is no activity we can read."""


def read_activity(body: bytes) -> Activity:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise PayloadError("body is not a JSON object")
    if not isinstance(data.get("type"), str):
        raise PayloadError("activity without a type")
    try:
        return Activity.model_validate(data)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.errors()[0].get("loc", ())) if error.errors() else ""
        raise PayloadError(f"not an activity ({where or 'shape'})"[:200]) from None
    except Exception:  # the SDK's own checks raise bare exceptions (channel id against product info)
        raise PayloadError("not an activity") from None


# -- names ------------------------------------------------------------------------------------------


def _guid_or_id(value: str) -> str:
    return value.lower() if _GUID.match(value) else value


def identity(tenant: str, teams_id: str) -> str:
    return f"{PLATFORM}:{tenant}:{_guid_or_id(teams_id)}"


def tenant_of(activity: Activity, local: bool) -> str:
    tenant = activity.conversation.tenant_id if activity.conversation else None
    if not tenant:
        data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
        found = (data.get("tenant") or {}) if isinstance(data.get("tenant"), dict) else {}
        tenant = found.get("id") if isinstance(found.get("id"), str) else None
    if not tenant:
        if local:
            return LOCAL_TENANT
        raise PayloadError("activity without a tenant")
    if not _TENANT.match(tenant):
        raise PayloadError("tenant id is not a Teams tenant id")
    return tenant.lower()


def conversation_id(activity: Activity) -> str:
    """The conversation, not the thread: a channel's id without `;messageid=…`."""
    if activity.conversation is None or not activity.conversation.id:
        raise PayloadError("activity without a conversation")
    return _THREAD.sub("", activity.conversation.id)


def is_personal(activity: Activity) -> bool:
    conversation = activity.conversation
    if conversation is None:
        return False
    if conversation.conversation_type:
        return conversation.conversation_type == "personal"
    return not conversation.is_group  # the Emulator and the Playground say neither


def is_channel(activity: Activity) -> bool:
    return bool(activity.conversation and activity.conversation.conversation_type == "channel")


def person_id(activity: Activity) -> str:
    sender = activity.from_property
    if sender is None or not sender.id:
        raise PayloadError("activity without a sender")
    return sender.aad_object_id or sender.id


def _from_bot(activity: Activity) -> bool:
    """This bot or another (Teams names bots `28:<app id>`, people `29:…`): as on Slack, what a bot
    says is never taken for a member of the channel's city speaking."""
    sender, bot = activity.from_property, activity.recipient
    if sender is None:
        return False
    if sender.role == "bot" or (sender.id or "").startswith("28:"):
        return True
    return bool(bot and sender.id and sender.id == bot.id)


def _reference_of(activity: Activity) -> ConversationReference:
    try:
        return activity.get_conversation_reference()
    except (ValidationError, ValueError, TypeError):
        raise PayloadError("activity without what a conversation reference needs") from None


def require(activity: Activity) -> None:
    """What every message and installation must name: where to answer, who spoke, to which bot."""
    if not activity.service_url:
        raise PayloadError("activity without a serviceUrl")
    for name, account in (("from", activity.from_property), ("recipient", activity.recipient)):
        if account is None or not account.id:
            raise PayloadError(f"activity without {name}.id")
    conversation_id(activity)


def reference(activity: Activity, thread: bool = False) -> dict[str, Any]:
    """The conversation reference as the protocol spells it; without the thread unless `thread`."""
    found = _reference_of(activity)
    if thread:
        return dump(found)
    # For later, unprompted messages: the conversation itself, not this thread or this activity.
    if found.conversation is not None and found.conversation.id:
        found.conversation = found.conversation.model_copy(update={"id": conversation_id(activity)})
    data = dump(found)
    data.pop("activityId", None)
    return data


def dump(found: ConversationReference) -> dict[str, Any]:
    return found.model_dump(by_alias=True, exclude_none=True, mode="json")


def landing(recipient: str, found: dict[str, Any] | None) -> str:
    """The identity of the conversation a send to `recipient` through the reference `found` lands in:
    a person's personal chat under the chat's own name (its answers go there under that name), a
    channel's thread as the channel; `recipient` itself while no conversation is known yet."""
    conversation = found.get("conversation") if isinstance(found, dict) else None
    chat = conversation.get("id") if isinstance(conversation, dict) else None
    if not isinstance(chat, str) or not chat:
        return recipient
    tenant = recipient.split(":", 2)[1]
    return identity(tenant, _THREAD.sub("", chat))


def person_reference(activity: Activity, tenant: str) -> dict[str, Any]:
    """What a private reply needs to open a personal chat with the sender: the service, the bot, the
    person, the tenant; no conversation yet (it is created at the first send, then stored)."""
    data = dump(_reference_of(activity))
    data.pop("activityId", None)
    data["conversation"] = {"conversationType": "personal", "tenantId": tenant}
    return data


def _message_id(conversation: str, activity_id: str) -> str:
    # Activity ids are unique within a conversation: the pair is unique everywhere.
    key = f"{conversation}|{activity_id}"
    return key if len(key) <= 200 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _text(activity: Activity) -> str:
    text = activity.text or ""
    if activity.recipient is not None and activity.recipient.id:
        # A mention entity the SDK cannot read is left alone: its tags are unwrapped below.
        with contextlib.suppress(Exception):
            text = activity.remove_recipient_mention()
    # Anyone else mentioned stays as their name.
    text = _AT.sub(lambda m: m.group(1), text)
    return html.unescape(text).replace("\xa0", " ").strip()


def _mentions_bot(activity: Activity) -> bool:
    bot = activity.recipient.id if activity.recipient else None
    if not bot:
        return False
    try:
        return any(m.mentioned is not None and m.mentioned.id == bot for m in activity.get_mentions())
    except Exception:
        return False


def _media(activity: Activity) -> list[str]:
    """What was attached (pictures, files), which the bot does not read; not the HTML copy of the text
    Teams attaches to a message, nor a card."""
    found: list[str] = []
    for attachment in activity.attachments or []:
        kind = attachment.content_type or ""
        if kind.lower().startswith(_NOT_MEDIA):
            continue
        found.append(str(attachment.content_url or kind)[:MAX_MEDIA_CHARS])
    return found[:MAX_MEDIA]


def submitted(activity: Activity) -> str | None:
    """The command an Adaptive Card's Action.Submit stands for, None when it is no such submit."""
    value = activity.value
    if not isinstance(value, dict) or value.get(ACTION_KEY) != RESOLVE_ACTION:
        return None
    raw = value.get(VALUE_KEY)
    argument = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    argument = " ".join(argument.split())[:MAX_ACTION_VALUE]
    return f"/cda resolve {argument}".strip()


# -- messages ---------------------------------------------------------------------------------------


def from_message(activity: Activity, received_at: datetime, local: bool) -> InboundMessage | None:
    """A message activity as an inbound message; None for what the bot must not answer."""
    if activity.type != "message":
        return None
    require(activity)
    if _from_bot(activity):
        return None
    if not activity.id:
        raise PayloadError("message without an id")
    tenant = tenant_of(activity, local)
    conversation = conversation_id(activity)
    personal = is_personal(activity)
    command = submitted(activity)
    text = command if command is not None else _text(activity)
    addressed = personal or command is not None or _mentions_bot(activity)
    if not text and (activity.value is not None or not addressed):
        # A submit of a card that is not ours, or chatter without words: nothing to answer. What is
        # said to the bot is answered even without words (a bare mention, a picture): never silence.
        return None
    stored = reference(activity)
    thread_reference = reference(activity, thread=True)
    # A card's button answers the one who pressed it, privately (their personal chat).
    private = personal or command is not None
    if personal:
        reply_context: dict[str, Any] | None = {"reference": thread_reference}
    elif command is not None:
        reply_context = None
    else:
        reply_context = {
            "reference": thread_reference,
            # In a channel the answer goes in the post's thread.
            "replyToId": activity.id if is_channel(activity) else None,
        }
    try:
        return InboundMessage(
            platform=PLATFORM,
            message_id=_message_id(conversation, activity.id),
            conversation=identity(tenant, conversation),
            sender=identity(tenant, person_id(activity)),
            text=text,
            received_at=received_at,
            media=_media(activity),
            reference=stored,
            reply_context=reply_context,
            # Someone first met in a channel: how to reach them privately (their personal chat opens
            # on the first private answer), kept only while nothing is stored for them.
            sender_reference=None if personal else person_reference(activity, tenant),
            direct=personal,
            private=private,
            addressed=addressed,
        )
    except ValidationError:
        raise PayloadError("conversation or sender id too long or empty") from None


# -- the bot installed or removed --------------------------------------------------------------------


@dataclass(frozen=True)
class Lifecycle:
    installed: bool  # False: removed
    conversation: str  # identity
    reference: dict[str, Any]
    person: str | None  # in a personal chat: the person's identity, who the chat is with
    greet: bool  # a new installation (not an upgrade, not a replay of the install event)
    channel: bool  # installed in a team (its channels), as opposed to a chat
    activity_id: str
    locale: str | None = None


def lifecycle(activity: Activity, local: bool) -> Lifecycle | None:
    bot = activity.recipient.id if activity.recipient else None
    if activity.type == "conversationUpdate" and bot:
        added = any(m.id == bot for m in activity.members_added or [])
        removed = any(m.id == bot for m in activity.members_removed or [])
        if not (added or removed):
            return None
        installed, greet = added, added
    elif activity.type == "installationUpdate":
        action = (activity.action or "").lower()
        if action not in ("add", "add-upgrade", "remove", "remove-upgrade"):
            return None
        # Teams also sends conversationUpdate for a new installation: that one greets.
        installed, greet = action.startswith("add"), False
    else:
        return None
    require(activity)
    tenant = tenant_of(activity, local)
    personal = is_personal(activity)
    person = None
    if personal and activity.from_property is not None and activity.from_property.id:
        person = identity(tenant, person_id(activity))
    found = reference(activity)
    conversation = identity(tenant, conversation_id(activity))
    for name in (conversation, person):
        if name is not None:
            try:
                normalize_identity(name)  # one the store and the command line can name
            except IdentityError:
                raise PayloadError("conversation or person id is no Teams identity") from None
    return Lifecycle(
        installed=installed,
        conversation=conversation,
        reference=found,
        person=person,
        greet=greet,
        channel=is_channel(activity) or bool(_team_id(activity)),
        activity_id=activity.id or "",
        locale=activity.locale,
    )


def _team_id(activity: Activity) -> str | None:
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = data.get("team")
    return team.get("id") if isinstance(team, dict) and isinstance(team.get("id"), str) else None
