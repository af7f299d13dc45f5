"""Spacing sends to one conversation as each platform asks, without holding up anyone else."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from bot.core.identity import platform_of

# Seconds between two messages to the same key: Slack allows about one message a second per channel,
# Teams seven a second per conversation, WhatsApp (Twilio) eighty a second per sender number.
INTERVALS = {"slack": 1.0, "teams": 1 / 7, "whatsapp": 1 / 80}


def limit_key(recipient: str) -> str:
    """What a platform counts a limit against: the conversation, or for WhatsApp our one sender."""
    platform = platform_of(recipient)
    return "whatsapp" if platform == "whatsapp" else recipient


class RateLimiter:
    def __init__(
        self,
        intervals: dict[str, float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.intervals = INTERVALS if intervals is None else intervals
        self.monotonic = monotonic
        self.sleep = sleep
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, recipient: str) -> None:
        """Return when a message to `recipient` may go; other keys are never delayed by this one."""
        interval = self.intervals.get(platform_of(recipient), 0.0)
        if interval <= 0:
            return
        key = limit_key(recipient)
        async with self._locks.setdefault(key, asyncio.Lock()):
            delay = self._next.get(key, 0.0) - self.monotonic()
            if delay > 0:
                await self.sleep(delay)
            self._next[key] = self.monotonic() + interval
