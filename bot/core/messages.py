"""What flows through the core: one inbound message type, one reply type, and the adapter protocol."""

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

MAX_TEXT = 8000
UPDATE_RECORDED = "update_recorded"  # Reply.kind of a recorded momentum update


class InboundMessage(BaseModel):
    """A message from any platform, already verified and parsed by its adapter."""

    platform: str
    message_id: str = Field(max_length=200)
    conversation: str = Field(max_length=200, description="identity of the conversation, e.g. slack:T1:C1")
    sender: str = Field(max_length=200, description="identity of the person, e.g. slack:T1:U1")
    text: str
    received_at: datetime
    thread: str | None = None
    reference: dict[str, Any] | None = Field(
        default=None, description="what the adapter needs to message this conversation later"
    )
    direct: bool = Field(default=False, description="a one-to-one conversation with the bot")
    addressed: bool = Field(
        default=True,
        description="said to the bot (DM, mention, command); False for chatter in a shared channel",
    )
    raw: dict[str, Any] = Field(default_factory=dict)


class ReplyField(BaseModel):
    label: str
    value: str


class Button(BaseModel):
    label: str
    action: str
    value: str
    command: str = Field(description="the same action as text, for platforms without buttons")


class Attachment(BaseModel):
    filename: str
    media_type: str
    content: str


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


class DeliveryError(Exception):
    """A send that failed; `retry_after` (seconds) when the platform said when to try again."""

    def __init__(self, message: str, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class Adapter(Protocol):
    """Translates between one platform and the core. No business rules live here."""

    platform: str

    async def send(self, recipient: str, reply: Reply, reference: dict[str, Any] | None) -> None:
        """Deliver `reply` to `recipient` (an identity) unprompted; raise DeliveryError on failure."""
        ...
