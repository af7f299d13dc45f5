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
        reply_context={"terminal": True},
        direct=True,
        private=True,
    )


class ConsoleAdapter:
    """Delivers unprompted messages to `console:` identities by printing them."""

    platform = PLATFORM

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    async def send(
        self,
        recipient: str,
        reply: Reply,
        reference: dict[str, Any] | None,
        context: dict[str, Any] | None = None,
    ) -> None:
        # An answer to what was just typed reads as the bot's reply; anything else says whom it is for.
        self.write(render_text(reply) if context is not None else f"[to {recipient}] {render_text(reply)}")
