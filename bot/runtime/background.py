"""Work done after the platform has been acknowledged, tracked so shutdown can let it finish."""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("cda_bot.background")


class BackgroundWork:
    def __init__(self) -> None:
        # The loop keeps only weak references to tasks: without this set, one could vanish mid-flight.
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background work failed",
                exc_info=task.exception(),
                extra={"task": task.get_name()},
            )

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Wait for the work in flight; what is still running after `timeout` seconds is cancelled."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in late:
            log.warning("background work cancelled at shutdown", extra={"task": task.get_name()})
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1)
