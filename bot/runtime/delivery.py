"""The one path for unprompted messages: due outbox rows go out through the recipient's adapter,
each exactly once across passes, restarts and replicas (see README, "Promises")."""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.core.identity import platform_of
from bot.core.messages import Adapter, DeliveryError, Reply
from bot.runtime.ratelimit import RateLimiter, limit_key
from store.models import OutboxMessage, OutboxStatus
from store.repo import open_store

log = logging.getLogger("cda_bot.delivery")

BACKOFF_SECONDS = (30, 120, 600, 1800, 3600)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
# How long a claimed row stays with its deliverer; a deliverer that died gives it back after this.
LEASE = timedelta(minutes=10)


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


def retry_delay(attempts: int, retry_after: float | None) -> timedelta:
    backoff = BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]
    return timedelta(seconds=max(backoff, retry_after or 0))


class Deliverer:
    def __init__(
        self,
        engine: Engine,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.clock = clock
        self.limiter = limiter or RateLimiter()

    async def deliver_due(self, limit: int = 500) -> DeliveryReport:
        """Send what is due to recipients whose platform has an adapter; the rest stays queued."""
        report = DeliveryReport()
        now = self.clock.now()
        rows = await asyncio.to_thread(self._claim, now, limit)
        queues: dict[str, list[OutboxMessage]] = defaultdict(list)
        for row in rows:
            queues[limit_key(row.recipient)].append(row)
        # One queue per rate-limit key, all at once: a slow channel never holds up another.
        await asyncio.gather(*(self._drain(queue, now, report) for queue in queues.values()))
        return report

    async def _drain(self, queue: list[OutboxMessage], now: datetime, report: DeliveryReport) -> None:
        for row in queue:
            assert row.id is not None
            if row.expires_at is not None and now >= row.expires_at:
                log.info("outbox message expired, not sent", extra={"outbox_id": row.id, "kind": row.kind})
                await asyncio.to_thread(self._finish, row.id, OutboxStatus.dropped, now, "expired", None)
                report.dropped.append(row.id)
                continue
            reference = await asyncio.to_thread(self._reference, row.recipient)
            # The wait comes last, right before the send, so the spacing holds between actual sends.
            await self.limiter.wait(row.recipient)
            await self._send(row, reference, now, report)

    async def _send(
        self, row: OutboxMessage, reference: dict[str, Any] | None, now: datetime, report: DeliveryReport
    ) -> None:
        assert row.id is not None
        adapter = self.adapters[platform_of(row.recipient)]
        try:
            await adapter.send(row.recipient, Reply.model_validate(row.payload), reference)
        except Exception as error:
            retry_after = error.retry_after if isinstance(error, DeliveryError) else None
            permanent = isinstance(error, DeliveryError) and error.permanent
            reason = f"{type(error).__name__}: {error}"[:1000]
            if permanent or row.attempts >= MAX_ATTEMPTS:
                log.warning("outbox message failed", extra={"outbox_id": row.id, "attempts": row.attempts})
                await asyncio.to_thread(self._finish, row.id, OutboxStatus.failed, now, reason, None)
                report.failed.append(row.id)
            else:
                retry_at = now + retry_delay(row.attempts, retry_after)
                await asyncio.to_thread(self._finish, row.id, OutboxStatus.pending, now, reason, retry_at)
                report.retrying.append(row.id)
            return
        await asyncio.to_thread(self._finish, row.id, OutboxStatus.sent, now, None, None)
        report.sent.append(row.id)

    def _claim(self, now: datetime, limit: int) -> list[OutboxMessage]:
        with open_store(self.engine) as store:
            return store.claim_due(now, list(self.adapters), LEASE, limit)

    def _finish(
        self,
        outbox_id: int,
        status: OutboxStatus,
        now: datetime,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        with open_store(self.engine) as store:
            store.finish(outbox_id, status, now, error, retry_at)

    def _reference(self, recipient: str) -> dict[str, Any] | None:
        with open_store(self.engine) as store:
            return store.reference(recipient)
