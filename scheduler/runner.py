"""One scheduler pass: plan what is due into the outbox, then deliver it."""

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.runtime import metrics
from bot.runtime.delivery import Deliverer, DeliveryReport
from scheduler.planner import PlanReport, plan_pass
from store import agenda
from store.models import NUDGE_AFTER_DAYS_MAX

log = logging.getLogger("cda_bot.scheduler")

# Platforms retry a message for minutes (Slack) to a day at most; a month is far beyond any retry.
KEEP_PROCESSED = timedelta(days=30)
# An outbox row's key keeps its message from being planned again for as long as the planner may plan
# it: a nudge's for its whole quiet stretch (up to NUDGE_AFTER_DAYS_MAX days), a reminder's up to 14
# days before its session, a digest's for its week, a reply's while its message id is remembered
# (KEEP_PROCESSED). Twice the longest of them; a stale-blocker notice is kept while its blocker is open.
KEEP_SENT = timedelta(days=2 * NUDGE_AFTER_DAYS_MAX)
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
            started = time.perf_counter()
            planned = await asyncio.to_thread(self._plan)
            metrics.SCHEDULER_PASS_SECONDS.observe(time.perf_counter() - started)
            if self.deliverer.running:
                # The server's delivery loop sends it, in the same lanes as every reply.
                self.deliverer.wake()
                return PassReport(planned, DeliveryReport())
            return PassReport(planned, await self.deliverer.deliver_due())

    def _plan(self) -> PlanReport:
        # Short transactions throughout: SQLite has one writer, and an inbound message must not wait
        # for a pass to finish.
        now = self.clock.now()
        turn = self.deliverer.turns.turn  # the process's writers': arrivals are stored first
        agenda.forget_processed(self.engine, now - KEEP_PROCESSED, turn=turn)
        agenda.forget_sent(self.engine, now - KEEP_SENT, turn=turn)
        report = plan_pass(self.engine, now, turn)
        # Also rows for a platform whose adapter is not running here: they would wait forever.
        for key in agenda.drop_expired(self.engine, now, EXPIRED, turn=turn):
            log.info("outbox message dropped: %s", EXPIRED, extra={"key": key})
            report.dropped.append(key)
        return report
