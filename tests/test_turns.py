"""Writer threads of one process take turns on SQLite: storing arrivals goes first, but never twice in
a row over a writer that waits, so neither kind is starved; with turns off they run together."""

import threading
import time

from bot.runtime.turns import Turns


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
