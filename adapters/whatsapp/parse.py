"""Twilio's webhook forms: read as received (every field, every value, in case Twilio adds some), then
turned into an inbound message or a delivery status."""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl

from pydantic import ValidationError

from bot.core.identity import IdentityError, normalize_identity
from bot.core.messages import InboundMessage

PLATFORM = "whatsapp"
MAX_MEDIA = 10  # WhatsApp sends at most one; Twilio's form numbers them MediaUrl0…
WINDOW_OPENED = "last_inbound_at"
# A message's SID (SM…, MM… with media): its exact shape matters, as it is what drops a message sent
# twice. Twilio signs the form's names and values run together, so a signed form can be split again,
# its MessageSid cut short (the rest in a made-up name) under the same signature: a cut SID is no SID.
_MESSAGE_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
# The number as Twilio wrote it, when that is not the stored form (bot/core/identity.py): WhatsApp knows
# some Mexican, Argentine and Brazilian mobiles only by their other form, so answers go to this one.
ADDRESS = "address"


class PayloadError(ValueError):
    """A form the bot cannot read: 400, the sender's fault."""


class Form(dict[str, str]):
    """The fields as received: the first value by name, and `getall` for every value, which is what
    twilio's RequestValidator signs when a name repeats."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in pairs:
            values[name].append(value)
        super().__init__({name: found[0] for name, found in values.items()})
        self._values = dict(values)

    def getall(self, name: str) -> list[str]:
        return list(self._values.get(name, []))


def read_form(body: bytes) -> Form:
    """An application/x-www-form-urlencoded body, fields with empty values kept (they are signed too)."""
    try:
        text = body.decode("utf-8")
        return Form(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("body is not a urlencoded form") from None


def signed_url(public_base_url: str, path: str, query: str) -> str:
    """The URL Twilio called, and signed: the public address, not the one a proxy forwarded to."""
    return f"{public_base_url}{path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Incoming:
    """One WhatsApp message as Twilio reports it."""

    sid: str
    sender: str  # whatsapp:+E164, in its stored form
    text: str
    address: str  # `From` as Twilio wrote it: where answers go
    media: list[str] = field(default_factory=list)  # URLs of what was attached
    profile_name: str | None = None

    def inbound(self, received_at: datetime) -> InboundMessage:
        # When the number last wrote opens WhatsApp's 24-hour window for free text, and the form it wrote
        # from is one WhatsApp delivers to: kept as the way to reach it unprompted, and with the reply.
        opened = received_at.isoformat()
        reach: dict[str, object] = {WINDOW_OPENED: opened}
        if self.address != self.sender:
            reach[ADDRESS] = self.address
        context: dict[str, object] = dict(reach)
        if self.media:
            context["media"] = self.media  # what was attached stays with the answer to it
        try:
            return InboundMessage(
                platform=PLATFORM,
                message_id=self.sid,
                conversation=self.sender,  # WhatsApp through Twilio: always one to one
                sender=self.sender,
                text=self.text,
                media=self.media,
                received_at=received_at,
                reference=dict(reach),
                reply_context=context,
                direct=True,
                private=True,
                addressed=True,
            )
        except ValidationError:
            raise PayloadError("MessageSid or From unusable") from None


def sender_of(form: Form) -> tuple[str, str] | None:
    """`From` as an identity, and as Twilio wrote it (the form WhatsApp knows the phone by, where
    answers go); None when it is no WhatsApp number (an SMS to the same Twilio number)."""
    raw = form.get("From", "").strip()
    if not raw.startswith(f"{PLATFORM}:"):
        return None
    try:
        return normalize_identity(raw), raw
    except IdentityError:
        return None


def incoming(form: Form) -> Incoming | None:
    """The message in an inbound webhook; None for what is no WhatsApp message to answer."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    if not _MESSAGE_SID.fullmatch(sid):
        raise PayloadError("MessageSid missing or not a Twilio message SID")
    found = sender_of(form)
    if found is None:
        return None
    sender, address = found
    try:
        count = min(int(form.get("NumMedia", "0") or "0"), MAX_MEDIA)
    except ValueError:
        count = 0
    media = [url for url in (form.get(f"MediaUrl{i}", "") for i in range(count)) if url]
    return Incoming(
        sid=sid,
        sender=sender,
        address=address,
        text=form.get("Body", "").strip(),
        media=media,
        profile_name=form.get("ProfileName") or None,
    )


# Twilio's message statuses as the outbox keeps them; the rest (queued, accepted, sending, scheduled,
# receiving, received, canceled…) says nothing the outbox needs.
STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "undelivered",
    "failed": "failed",
}


@dataclass(frozen=True)
class Status:
    """A delivery status callback: `sid` moved to `status`, with Twilio's error code when it failed."""

    sid: str
    status: str
    recipient: str | None
    error_code: str | None

    @property
    def delivery(self) -> str | None:
        return STATUSES.get(self.status.lower())

    @property
    def code(self) -> int | None:
        try:
            return int(self.error_code) if self.error_code else None
        except ValueError:
            return None


def status(form: Form) -> Status:
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    state = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not sid or not state:
        raise PayloadError("MessageSid or MessageStatus missing")
    return Status(
        sid=sid[:200],
        status=state[:40],
        recipient=form.get("To") or None,
        error_code=(form.get("ErrorCode") or None),
    )
