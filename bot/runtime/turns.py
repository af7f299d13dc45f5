"""Whose turn it is to write, where the database takes one writer at a time (SQLite).

Left to SQLite, a writer that finds the lock taken sleeps in its busy handler, longer each try (1, 2,
5, 10, … 100 ms), and one that keeps finding it taken can wait for seconds while others take turns.
Here this process's writer threads wait in line instead, each woken the moment the one before
commits, and storing what just arrived (the platform is waiting for its acknowledgement) goes before
handling and sending (nobody waits on those by the millisecond) — but never twice in a row over one
that waits, so handling keeps up under a flood and an arrival waits for one write at most. Another
process's writers still meet SQLite's busy handler, which is rare (a `cda-bot` command beside the
server). A turn is taken in the thread that writes: passing it on involves no event loop."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._changed = threading.Condition()
        self._busy = False
        self._last_urgent = False
        self._waiting = {True: 0, False: 0}  # urgent → how many wait

    @contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with self._changed:
            self._waiting[urgent] += 1
            try:
                self._changed.wait_for(lambda: self._may_go(urgent))
            finally:
                self._waiting[urgent] -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy, self._last_urgent = False, urgent
                self._changed.notify_all()

    def _may_go(self, urgent: bool) -> bool:
        if self._busy:
            return False
        if urgent:
            return not (self._last_urgent and self._waiting[False])
        return self._last_urgent or not self._waiting[True]
