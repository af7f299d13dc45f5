"""What flows through the core: one inbound message type, one reply type, and the adapter protocol."""

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, Field

from bot.core.i18n import LANGUAGES, N_, countdown, translator

MAX_TEXT = 8000
# Told when a message could not be stored: before the database could say who spoke and in which
# language, so in the platform's language where it names one, else in the program's three.
NOT_SAVED = N_("I couldn't record that just now, so nothing was saved. Please send it again in a minute.")
# Told when a message may yet be stored once the platform's deadline has passed, as its answer is.
STILL_SAVING = N_("I'm still saving that. Once it's saved, my answer will follow here.")
UPDATE_RECORDED = "update_recorded"  # Reply.kind of a recorded momentum update
BLOCKER_LOGGED = "blocker_logged"
BLOCKER_RESOLVED = "blocker_resolved"
# Replies telling someone that what they sent was recorded: late, they still say so (and that sending it
# again would record it twice), where any other answer is no longer worth giving.
RECORDED = frozenset({UPDATE_RECORDED, BLOCKER_LOGGED, BLOCKER_RESOLVED})
SOON = "{soon}"  # in a reply with `starts_at`: replaced by "in 52 minutes" when the reply is sent


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def not_saved(language: str | None = None) -> str:
    """NOT_SAVED in `language` (`es`, or a locale such as `es-419`), or in all three, a line each, when
    none is known."""
    return _told_without_database(NOT_SAVED, language)


def still_saving(language: str | None = None) -> str:
    """STILL_SAVING as `not_saved` gives NOT_SAVED."""
    return _told_without_database(STILL_SAVING, language)


def _told_without_database(message: str, language: str | None) -> str:
    code = (language or "").split("-")[0].lower()
    return "\n".join(
        translator(lang).gettext(message) for lang in ([code] if code in LANGUAGES else LANGUAGES)
    )


def clean_text(value: str) -> str:
    """What any store can keep: a NUL byte (refused by PostgreSQL) and unpaired surrogates (not UTF-8)
    become U+FFFD, the replacement character, instead of failing the whole message later."""
    return _UNSTORABLE.sub("\ufffd", value)


Clean = Annotated[str, AfterValidator(clean_text)]
Id = Annotated[str, AfterValidator(clean_text), Field(min_length=1, max_length=200)]


class InboundMessage(BaseModel):
    """A message from any platform, already verified and parsed by its adapter."""

    platform: str = Field(max_length=20)
    message_id: Id
    conversation: Id = Field(description="identity of the conversation, e.g. slack:T1:C1")
    sender: Id = Field(description="identity of the person, e.g. slack:T1:U1")
    text: Clean
    received_at: datetime
    media: list[str] = Field(
        default_factory=list, description="what was attached (URLs): the bot reads text only, for now"
    )
    reference: dict[str, Any] | None = Field(
        default=None, description="what the adapter needs to message this conversation later"
    )
    sender_reference: dict[str, Any] | None = Field(
        default=None,
        description="how to reach the sender privately, kept only while nothing is stored for them",
    )
    reply_context: dict[str, Any] | None = Field(
        default=None,
        description="where a reply goes within the platform (a thread, a response URL), for the adapter",
    )
    reply_expires_at: datetime | None = Field(
        default=None, description="when a reply can no longer be given (a Slack response URL's 30 minutes)"
    )
    direct: bool = Field(default=False, description="a one-to-one conversation with the bot")
    private: bool = Field(
        default=False,
        description="only the sender saw it (a DM, a slash command): the replies are for the sender alone",
    )
    addressed: bool = Field(
        default=True,
        description="said to the bot (DM, mention, command); False for chatter in a shared channel",
    )

    @property
    def seen_by_others(self) -> bool:
        return not (self.direct or self.private)

    @property
    def asked(self) -> tuple[str, str | None]:
        """Who speaks, and in which conversation (None: directly to the bot), as `views.whereabouts`
        asks."""
        return self.sender, None if self.conversation == self.sender else self.conversation


class ReplyField(BaseModel):
    label: str
    value: str


class Button(BaseModel):
    label: str
    action: str
    value: str
    command: str = Field(description="the same action as text, for platforms without buttons")


# Tells a spreadsheet a downloaded CSV is UTF-8: without it Excel reads its local code page, and "São"
# and "reunión" open as "SÃ£o" and "reuniÃ³n". Shown inline in a chat, a CSV goes without it.
CSV_MARK = "\ufeff"


class Attachment(BaseModel):
    filename: str
    media_type: str
    content: str

    def as_file(self) -> str:
        """The content as a file to download."""
        return CSV_MARK + self.content if self.media_type == "text/csv" else self.content


class Reply(BaseModel):
    """Text every platform can show, plus optional structure an adapter renders natively
    (Block Kit, Adaptive Card); a plain-text platform shows `text` and the structure as lines."""

    text: str
    title: str | None = None
    fields: list[ReplyField] = Field(default_factory=list)
    items: list[str] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)
    attachment: Attachment | None = None
    kind: str | None = Field(
        default=None, description="what happened (e.g. update_recorded), for native acknowledgements"
    )
    about: list[int] = Field(
        default_factory=list, description="the cities whose data this shows: who may see it depends on it"
    )
    starts_at: datetime | None = Field(
        default=None, description="the instant `{soon}` in the text counts down to, rendered when sent"
    )
    language: str = "en"
    personal: bool = Field(
        default=False,
        description="for the sender alone wherever they asked (a sign-in link), never in a conversation",
    )
    asker: tuple[str, str | None] | None = Field(
        default=None,
        description="for an answer only its asker sees (their DM's too): who asked, and where, as "
        "`views.whereabouts` takes them; whether it may still go, held back, is theirs to see. None: "
        "the recipient, a conversation others see, decides",
    )

    def rendered(self, now: datetime) -> "Reply":
        """The reply as it reads at `now`: "starts in 52 minutes" is true when it is sent, not planned."""
        if self.starts_at is None:
            return self
        soon = countdown(self.starts_at, now, self.language)
        return self.model_copy(
            update={
                "text": self.text.replace(SOON, soon),
                "items": [item.replace(SOON, soon) for item in self.items],
                "title": self.title.replace(SOON, soon) if self.title else self.title,
                "starts_at": None,
            }
        )


class Outgoing(BaseModel):
    """A reply on its way: to whom, and where within the platform (the adapter's reply context)."""

    recipient: str
    reply: Reply
    context: dict[str, Any] | None = None


class DeliveryError(Exception):
    """A send that failed; `retry_after` (seconds) when the platform said when to try again; `sent`,
    the ids of the parts of a long reply that did go out before it failed (they are not sent again)."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        permanent: bool = False,
        sent: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.sent = tuple(sent)


class Adapter(Protocol):
    """Translates between one platform and the core. No business rules live here. An adapter whose
    platform counts its rate limit against something other than the recipient's identity (Teams: the
    conversation, which a person and their personal chat both name) has `limit_key(recipient,
    reference, context) -> str`, which the deliverer spaces sends by."""

    platform: str

    async def send(
        self,
        recipient: str,
        reply: Reply,
        reference: dict[str, Any] | None,
        context: dict[str, Any] | None = None,
    ) -> list[str] | None:
        """Deliver `reply` to `recipient` (an identity): unprompted, or as an answer within `context`;
        raise DeliveryError on failure. Where the platform reports on a message later (WhatsApp's
        delivery status), the ids it gave what went out, in order. An adapter whose DeliveryError
        named parts already sent (`sent`) is given them again, as `sent=`, when the row is retried,
        by whichever process: it sends the rest only, and returns the ids of all the parts."""
        ...
