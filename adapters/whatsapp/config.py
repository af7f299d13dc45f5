"""Which WhatsApp mode the settings ask for: off (no TWILIO_* setting at all) or on, with everything a
signed webhook and a reply need. A half-configured WhatsApp is an error at start, never at the first
message."""

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.runtime.settings import Settings

ROUTE = "/twilio/whatsapp"
STATUS_ROUTE = "/twilio/status"
DEFAULT_API_BASE_URL = "https://api.twilio.com"
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SENDER = re.compile(r"^whatsapp:\+[1-9][0-9]{6,14}$")
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
LANGUAGES = ("en", "es", "pt")
DEFAULT_MESSAGES_PER_SECOND = 80.0  # Twilio's default throughput for one WhatsApp sender


class WhatsAppConfigError(ValueError):
    """One line that says what is missing or wrong, for `serve` to print before it binds a port."""


@dataclass(frozen=True)
class WhatsAppConfig:
    account_sid: str
    sender: str  # whatsapp:+E164, the number messages come from
    public_base_url: str  # what Twilio calls, and signs: the server itself may sit behind a proxy
    api_base_url: str | None = None  # None: Twilio's own hosts
    # Approved templates (Content SIDs) by language, for messages outside the 24-hour window.
    content_sids: dict[str, str] = field(default_factory=dict)
    messages_per_second: float = DEFAULT_MESSAGES_PER_SECOND
    # repr=False keeps the secret out of tracebacks and logs.
    auth_token: str = field(default="", repr=False)

    def describe(self) -> str:
        base = f", REST at {self.api_base_url}" if self.api_base_url else ""
        templates = (
            f"templates for {', '.join(sorted(self.content_sids))}"
            if self.content_sids
            else "no templates (TWILIO_CONTENT_SIDS): nothing goes to a number silent for 24 hours"
        )
        return (
            f"whatsapp: on ({self.sender} via Twilio account {self.account_sid}{base}; "
            f"signed webhooks at {self.public_base_url}{ROUTE} and {STATUS_ROUTE}; {templates}; "
            f"at most {self.messages_per_second:g} messages a second)"
        )


def _text(value: object) -> str | None:
    if value is not None and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value.strip() if isinstance(value, str) and value.strip() else None


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WhatsAppConfigError(f"whatsapp: {name} must be an http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise WhatsAppConfigError(f"whatsapp: {name} must have no query or fragment")
    return value.rstrip("/")


def content_sids(value: str | None) -> dict[str, str]:
    """`en:HX…,es:HX…,pt:HX…` as a mapping, each part checked."""
    found: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        language, _, sid = (piece.strip() for piece in part.partition(":"))
        if language not in LANGUAGES or not _CONTENT_SID.match(sid):
            raise WhatsAppConfigError(
                f"whatsapp: TWILIO_CONTENT_SIDS part {part.strip()!r} should look like es:HX followed by "
                "32 hex digits (languages: en, es, pt)"
            )
        if language in found:
            raise WhatsAppConfigError(f"whatsapp: TWILIO_CONTENT_SIDS names {language} twice")
        found[language] = sid
    return found


def whatsapp_config(settings: Settings) -> WhatsAppConfig | None:
    """None when no TWILIO_* credential is set (WhatsApp is off); WhatsAppConfigError if half set."""
    sid = _text(settings.twilio_account_sid)
    token = _text(settings.twilio_auth_token)
    sender = _text(settings.twilio_whatsapp_from)
    api_base = _text(settings.twilio_api_base_url)
    templates = _text(settings.twilio_content_sids)
    rate = settings.twilio_messages_per_second
    if sid is None and token is None and sender is None:
        extra = [
            name
            for name, value in (
                ("TWILIO_API_BASE_URL", api_base),
                ("TWILIO_CONTENT_SIDS", templates),
                ("TWILIO_MESSAGES_PER_SECOND", rate),
            )
            if value is not None
        ]
        if extra:
            raise WhatsAppConfigError(
                f"whatsapp: {', '.join(extra)} set but TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
                "TWILIO_WHATSAPP_FROM are not"
            )
        return None
    missing = [
        name
        for name, value in (
            ("TWILIO_ACCOUNT_SID", sid),
            ("TWILIO_AUTH_TOKEN", token),
            ("TWILIO_WHATSAPP_FROM", sender),
        )
        if value is None
    ]
    if missing:
        raise WhatsAppConfigError(f"whatsapp: {', '.join(missing)} missing (Twilio Console › Account)")
    assert sid is not None and token is not None and sender is not None
    if not _ACCOUNT_SID.match(sid):
        raise WhatsAppConfigError("whatsapp: TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits")
    if not sender.startswith("whatsapp:"):
        sender = f"whatsapp:{sender}"  # "+14155238886" is what people copy from the Console
    if not _SENDER.match(sender):
        raise WhatsAppConfigError(
            f"whatsapp: TWILIO_WHATSAPP_FROM must be a number like whatsapp:+14155238886, not {sender!r}"
        )
    public = _text(settings.public_base_url)
    if public is None:
        # Signatures cover the URL Twilio called: without it no request could be checked.
        raise WhatsAppConfigError(
            "whatsapp: PUBLIC_BASE_URL is missing (the https address Twilio's webhooks call, "
            "e.g. https://bot.example.org)"
        )
    return WhatsAppConfig(
        account_sid=sid,
        sender=sender,
        public_base_url=_http_url("PUBLIC_BASE_URL", public),
        api_base_url=_http_url("TWILIO_API_BASE_URL", api_base) if api_base else None,
        content_sids=content_sids(templates),
        messages_per_second=_rate(rate),
        auth_token=token,
    )


def _rate(value: float | None) -> float:
    if value is None:
        return DEFAULT_MESSAGES_PER_SECOND
    if not 0 < value <= 1000:
        raise WhatsAppConfigError(
            f"whatsapp: TWILIO_MESSAGES_PER_SECOND must be between 0 and 1000, not {value:g}"
        )
    return value
