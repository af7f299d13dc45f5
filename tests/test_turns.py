"""Writer threads of one process take turns on SQLite: storing arrivals goes first, but never twice in
a row over a writer that waits, so neither kind is starved; with turns off they run together. Processes
on one database file take turns through a lock on a file beside it."""

import os
import select
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.core.clock import FixedClock
from bot.runtime.hub import Hub
from bot.runtime.turns import Turns, beside
from store.db import make_engine

NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


class Writers:
    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self.log: list[str] = []
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, name: str, urgent: bool) -> None:
        def write() -> None:
            with self.turns.turn(urgent):
                self.log.append(name)
                self.release.wait(5)

        # Waits for the line to form (or the write to happen), not for a timer.
        holding, queued, written = self.turns._busy, self.turns._waiting[urgent], len(self.log)
        thread = threading.Thread(target=write)
        thread.start()
        self.threads.append(thread)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.turns._waiting[urgent] > queued if holding else len(self.log) > written:
                return
            time.sleep(0.001)
        raise AssertionError(f"{name} neither wrote nor queued")

    def finish(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(5)


def test_arrivals_go_first_and_handling_gets_every_other_turn() -> None:
    writers = Writers(Turns())
    writers.start("handle-1", urgent=False)
    writers.start("handle-2", urgent=False)
    writers.start("store-1", urgent=True)
    writers.start("store-2", urgent=True)
    writers.start("store-3", urgent=True)
    assert writers.log == ["handle-1"]  # one writer at a time
    writers.finish()
    # An arrival goes next; then handling, before the other arrivals waiting.
    assert writers.log[0] == "handle-1" and writers.log[1].startswith("store-")
    assert writers.log[2] == "handle-2"
    assert sorted(writers.log) == ["handle-1", "handle-2", "store-1", "store-2", "store-3"]


def test_a_writer_raising_gives_its_turn_back() -> None:
    turns = Turns()
    try:
        with turns.turn(urgent=True):
            raise RuntimeError("the database said no")
    except RuntimeError:
        pass
    done = threading.Event()
    thread = threading.Thread(target=lambda: (turns.turn().__enter__(), done.set()))
    thread.start()
    assert done.wait(2)


def test_turns_off_lets_writers_run_together() -> None:
    writers = Writers(Turns(enabled=False))
    for n in range(3):
        writers.start(str(n), urgent=False)  # returns once it writes: none waits for another
    assert writers.log == ["0", "1", "2"]
    writers.finish()


# -- across processes: the server and its delivery process on one SQLite file -----------------------

TAKE_TURN = """
import sys, time
from bot.runtime.turns import Turns
with Turns(shared=sys.argv[1]).turn():
    print("turn", flush=True)
    time.sleep(float(sys.argv[2]))
print("done", flush=True)
"""


def _other_process(shared: str, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", TAKE_TURN, shared, str(hold)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _said_within(process: subprocess.Popen[str], seconds: float) -> str | None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    return process.stdout.readline().strip() if ready else None


def test_another_process_waits_for_this_ones_turn(tmp_path: Path) -> None:
    shared = beside(str(tmp_path / "cda.db"))
    assert shared is not None
    turns = Turns(shared=shared)
    with turns.turn():
        other = _other_process(shared, 0)
        try:
            assert _said_within(other, 0.5) is None  # still waiting while this process writes
        except BaseException:
            other.kill()
            raise
    assert _said_within(other, 10) == "turn"
    assert other.wait(10) == 0


def test_a_process_killed_in_its_turn_lets_the_others_go(tmp_path: Path) -> None:
    shared = str(tmp_path / "cda.db-turns")
    other = _other_process(shared, 60)
    try:
        assert _said_within(other, 10) == "turn"
        other.kill()
        other.wait(10)
        done = threading.Event()
        thread = threading.Thread(target=lambda: (Turns(shared=shared).turn().__enter__(), done.set()))
        thread.start()
        assert done.wait(5)
    finally:
        other.kill()


def test_turns_stay_within_the_process_where_the_shared_file_cannot_be_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    turns = Turns(shared=str(tmp_path / "no such folder" / "cda.db-turns"))
    with turns.turn():
        pass
    with turns.turn():  # said once, not at every turn
        pass
    assert [r.getMessage() for r in caplog.records].count("turns across processes off") == 1


def test_only_a_database_file_is_shared_by_processes() -> None:
    assert beside("/var/lib/cda/cda.db") == "/var/lib/cda/cda.db-turns"
    assert beside(":memory:") is None
    assert beside(None) is None
    assert beside("") is None


def test_the_hub_of_a_sqlite_file_takes_turns_with_other_processes(tmp_path: Path) -> None:
    on_file = Hub(make_engine(f"sqlite:///{tmp_path / 'cda.db'}"), FixedClock(NOW))
    assert on_file.turns._shared == str(tmp_path / "cda.db-turns")
    in_memory = Hub(make_engine("sqlite://"), FixedClock(NOW))
    assert in_memory.turns.enabled and in_memory.turns._shared is None


def test_the_shared_file_is_opened_once_and_closed_with_the_turns(tmp_path: Path) -> None:
    turns = Turns(shared=str(tmp_path / "cda.db-turns"))
    with turns.turn():
        first = turns._file
    with turns.turn(urgent=True):
        assert turns._file == first is not None  # not opened again for every write
    turns.close()
    assert turns._file is None
    with pytest.raises(OSError):
        os.fstat(first)
    other = _other_process(str(tmp_path / "cda.db-turns"), 0)  # nothing of this process holds it
    assert _said_within(other, 10) == "turn"
    assert other.wait(10) == 0
