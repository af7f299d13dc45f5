"""The terminal channel: messages typed in the terminal in, replies and deliveries printed out."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapters.text import render_text
from bot.core.messages import InboundMessage, Reply

PLATFORM = "console"


def inbound(identity: str, text: str, now: datetime) -> InboundMessage:
    # The terminal never retries, so every line is a new message.
    return InboundMessage(
        platform=PLATFORM,
        message_id=uuid.uuid4().hex,
        conversation=identity,
        sender=identity,
        text=text,
        received_at=now,
        direct=True,
    )


class ConsoleAdapter:
    """Delivers unprompted messages to `console:` identities by printing them."""

    platform = PLATFORM

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    async def send(self, recipient: str, reply: Reply, reference: dict[str, Any] | None) -> None:
        self.write(f"[to {recipient}] {render_text(reply)}")
