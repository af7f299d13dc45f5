"""One scheduler pass: plan what is due into the outbox, then deliver it."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.runtime.delivery import Deliverer, DeliveryReport
from scheduler.planner import PlanReport, plan
from store.repo import open_store

log = logging.getLogger("cda_bot.scheduler")

# Platforms retry a message for minutes (Slack) to a day at most; a month is far beyond any retry.
KEEP_PROCESSED = timedelta(days=30)
EXPIRED = "expired before it could be sent"


@dataclass
class PassReport:
    plan: PlanReport
    delivery: DeliveryReport


class PassRunner:
    """Runs passes one at a time; the database, not this object, knows what was sent."""

    def __init__(self, engine: Engine, deliverer: Deliverer, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.deliverer = deliverer
        self._running = asyncio.Lock()

    async def run(self) -> PassReport:
        async with self._running:
            planned = await asyncio.to_thread(self._plan)
            if self.deliverer.running:
                # The server's delivery loop sends it, in the same lanes as every reply.
                self.deliverer.wake()
                return PassReport(planned, DeliveryReport())
            return PassReport(planned, await self.deliverer.deliver_due())

    def _plan(self) -> PlanReport:
        with open_store(self.engine) as store:
            now = self.clock.now()
            store.forget_processed(now - KEEP_PROCESSED)
            report = plan(store, now)
            # Also rows for a platform whose adapter is not running here: they would wait forever.
            for key in store.drop_expired(now, EXPIRED):
                log.info("outbox message dropped: %s", EXPIRED, extra={"key": key})
                report.dropped.append(key)
            return report
