"""APScheduler inside `cda-bot serve`: it only says when to run a pass; the database decides what."""

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.runner import PassRunner

log = logging.getLogger("cda_bot.scheduler")

PASS_SECONDS = 60


async def _pass(runner: PassRunner) -> None:
    try:
        report = await runner.run()
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


def start_scheduler(runner: PassRunner, seconds: int = PASS_SECONDS) -> AsyncIOScheduler:
    """Start passes now and every `seconds`; a pass that overruns is not started twice."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        _pass,
        "interval",
        args=[runner],
        seconds=seconds,
        id="scheduler-pass",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler


async def stop_scheduler(scheduler: AsyncIOScheduler, runner: PassRunner) -> None:
    """No new passes; the one under way (if any) finishes first."""
    scheduler.shutdown(wait=False)
    await runner.idle()


class SchedulerService:
    """The scheduler as a part of the server: started and stopped with it."""

    def __init__(self, runner: PassRunner, seconds: int = PASS_SECONDS) -> None:
        self.runner = runner
        self.seconds = seconds
        self._scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        self._scheduler = start_scheduler(self.runner, self.seconds)

    async def stop(self) -> None:
        if self._scheduler is not None:
            await stop_scheduler(self._scheduler, self.runner)
            self._scheduler = None
