"""APScheduler inside `cda-bot serve`: it only says when to run a pass; the database decides what."""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.runner import PassRunner

log = logging.getLogger("cda_bot.scheduler")

PASS_SECONDS = 60


class SchedulerService:
    """The scheduler as a part of the server: a pass at start and every `seconds`, and on stop no new
    pass while the one under way finishes (stopping never cuts a send in half)."""

    def __init__(self, runner: PassRunner, seconds: int = PASS_SECONDS) -> None:
        self.runner = runner
        self.seconds = seconds
        self._scheduler: AsyncIOScheduler | None = None
        self._current: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._trigger,
            "interval",
            seconds=self.seconds,
            id="scheduler-pass",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)  # this cancels the job's wrapper, not the pass itself
            self._scheduler = None
        if self._current is not None:
            with contextlib.suppress(Exception):
                await self._current

    async def _trigger(self) -> None:
        self._current = asyncio.ensure_future(self._pass())
        await asyncio.shield(self._current)

    async def _pass(self) -> None:
        try:
            report = await self.runner.run()
        except Exception:
            log.exception("scheduler pass failed")
            return
        delivery = report.delivery
        if report.plan.planned or delivery.sent or delivery.failed or delivery.retrying:
            log.info(
                "scheduler pass",
                extra={
                    "planned": len(report.plan.planned),
                    "sent": len(delivery.sent),
                    "retrying": len(delivery.retrying),
                    "failed": len(delivery.failed),
                },
            )
