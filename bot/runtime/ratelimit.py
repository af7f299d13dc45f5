"""Spacing sends to one conversation as each platform asks, without holding up anyone else."""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from bot.core.identity import platform_of

# Seconds between two messages to the same key: Slack allows about one message a second per channel,
# Teams seven a second per conversation, WhatsApp (Twilio) eighty a second per sender number.
INTERVALS = {"slack": 1.0, "teams": 1 / 7, "whatsapp": 1 / 80}
# Longer windows on top of the spacing, as (at most this many messages, in this many seconds) per key:
# Teams allows 7 in 1 s (the spacing alone rounds to 8), 8 in 2 s, 60 in 30 s and 1,800 an hour.
Windows = tuple[tuple[int, float], ...]
WINDOWS: dict[str, Windows] = {"teams": ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))}


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
        *,
        windows: dict[str, Windows] | None = None,
    ) -> None:
        # Given intervals alone (tests), no windows apply unless given too.
        self.windows = windows if windows is not None else (WINDOWS if intervals is None else {})
        self.intervals = dict(INTERVALS if intervals is None else intervals)
        self.monotonic = monotonic
        self.sleep = sleep
        self._next: dict[str, float] = {}
        self._sent: dict[str, deque[float]] = {}  # recent send times per key, for the windows
        self._locks: dict[str, asyncio.Lock] = {}

    def set_rate(self, platform: str, per_second: float) -> None:
        """A platform's own rate where the operator set one (Twilio raises a sender's on request)."""
        self.intervals[platform] = 1 / per_second

    async def wait(self, recipient: str) -> None:
        """Return when a message to `recipient` may go; other keys are never delayed by this one."""
        platform = platform_of(recipient)
        interval = self.intervals.get(platform, 0.0)
        windows = self.windows.get(platform, ())
        if interval <= 0 and not windows:
            return
        key = limit_key(recipient)
        async with self._locks.setdefault(key, asyncio.Lock()):
            now = self.monotonic()
            delay = self._next.get(key, 0.0) - now
            sent = self._sent.get(key)
            for count, span in windows:
                if sent is not None and len(sent) >= count:
                    # The count-th latest send must be at least `span` ago.
                    delay = max(delay, sent[-count] + span - now)
            if delay > 0:
                await self.sleep(delay)
            at = self.monotonic()
            self._next[key] = at + interval
            if windows:
                if sent is None:
                    sent = self._sent[key] = deque(maxlen=max(count for count, _ in windows))
                sent.append(at)

    def done(self, recipient: str) -> None:
        """A send to `recipient` has been answered. Where the limit is the conversation's, the next
        waits its interval from now: the platform counts arrivals, and a send that left on time may
        have arrived late (a busy process, a slow network), bringing the next one closer than the
        limit. A limit many conversations share (WhatsApp's sender, Twilio counting messages a second
        and queueing the rest) still counts from each send's start."""
        key = limit_key(recipient)
        interval = self.intervals.get(platform_of(recipient), 0.0)
        if key == recipient and interval > 0:
            self._next[key] = max(self._next.get(key, 0.0), self.monotonic() + interval)
