"""Whose turn it is to write, where the database takes one writer at a time (SQLite).

Left to SQLite, a writer that finds the lock taken sleeps in its busy handler, longer each try (1, 2,
5, 10, … 100 ms), and one that keeps finding it taken can wait for seconds while others take turns.
Here this process's writer threads wait in line instead, each woken the moment the one before
commits, and storing what just arrived (the platform is waiting for its acknowledgement) goes before
handling and sending (nobody waits on those by the millisecond) — but never twice in a row over one
that waits, so handling keeps up under a flood and an arrival waits for one write at most.

Processes on one database file (the server and its delivery process, two servers) take turns too:
whoever holds this process's turn also takes an exclusive `flock` on a file beside the database,
which the kernel hands to the next process the moment it is let go, where SQLite's busy handler would
have slept. A process that dies lets go of it with its last file. The server's scheduler pass takes
its turns as handling does, a write at a time; writers that take none (a `cda-bot` command beside the
server) still meet SQLite's busy handler. A turn is taken in the thread that writes: passing it on
involves no event loop."""

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # Windows: turns within one process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cda_bot.turns")


class Turns:
    def __init__(self, enabled: bool = True, shared: str | None = None) -> None:
        """`shared`: the file other processes lock for their turns (`beside(database)`)."""
        self.enabled = enabled
        self._shared = shared if enabled and fcntl is not None else None
        self._file: int | None = None
        self._closer: weakref.finalize | None = None
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
            with self._across_processes():
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

    @contextmanager
    def _across_processes(self) -> Iterator[None]:
        file = self._shared_file()
        if file is None:
            yield
            return
        fcntl.flock(file, fcntl.LOCK_EX)  # waits without holding the GIL
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)

    def _shared_file(self) -> int | None:
        """The shared file, opened at the first turn and kept (only the thread holding this process's
        turn gets here: one file is enough for all of them). None, and this process's turns alone from
        then on, where it cannot be made."""
        if self._file is None and self._shared is not None:
            try:
                self._file = os.open(self._shared, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as error:
                log.warning("turns across processes off", extra={"path": self._shared, "error": str(error)})
                self._shared = None
                return None
            self._closer = weakref.finalize(self, os.close, self._file)
        return self._file

    def close(self) -> None:
        """Close the shared file (a later turn opens it again)."""
        if self._file is not None and self._closer is not None:
            self._closer()
            self._file = None


def beside(database: str | None) -> str | None:
    """The file whose lock is the turn of every process writing `database` (a SQLite file's path);
    None for a database in memory, which no other process can open."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return f"{database}-turns"
