"""Teams' limits per conversation: seven messages a second, and no more than 60 in 30 seconds, without
one busy conversation holding up another."""

import asyncio

from bot.runtime.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _send_times(limiter: RateLimiter, clock: FakeTime, recipient: str, count: int) -> list[float]:
    async def run() -> list[float]:
        times = []
        for _ in range(count):
            await limiter.wait(recipient)
            times.append(clock.now)
        return times

    return asyncio.run(run())


def test_teams_sends_at_most_seven_a_second_and_sixty_in_thirty_seconds() -> None:
    clock = FakeTime()
    limiter = RateLimiter(monotonic=clock.monotonic, sleep=clock.sleep)
    times = _send_times(limiter, clock, "teams:t1:19:busy@thread.tacv2", 130)
    for start in range(len(times)):
        within_a_second = [t for t in times[start:] if t < times[start] + 1.0]
        within_thirty = [t for t in times[start:] if t < times[start] + 30.0]
        assert len(within_a_second) <= 7
        assert len(within_thirty) <= 60
    # …and no slower than that: the 61st waits for the window, not much longer.
    assert 30.0 <= times[60] < 31.0
    assert times[6] < 1.0


def test_a_busy_conversation_does_not_hold_up_another() -> None:
    clock = FakeTime()
    limiter = RateLimiter(monotonic=clock.monotonic, sleep=clock.sleep)
    _send_times(limiter, clock, "teams:t1:19:busy@thread.tacv2", 61)
    before = clock.now
    _send_times(limiter, clock, "teams:t1:19:quiet@thread.tacv2", 1)
    assert clock.now == before


def test_intervals_given_alone_apply_no_windows() -> None:
    clock = FakeTime()
    limiter = RateLimiter({}, monotonic=clock.monotonic, sleep=clock.sleep)
    _send_times(limiter, clock, "teams:t1:19:busy@thread.tacv2", 100)
    assert clock.now == 0.0
