"""The same trivial command in-process: `/cda help` through cda-bot's dispatcher (stored, handled,
its reply written to the outbox and returned) and `!echo` through errbot's test backend.

Rounds alternate between the two, so both see the same machine; each figure is the median round.
errbot comes from the `bench` extra (`make bench` installs it); without it the floor is skipped.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, backends, figure, fresh_database, label, message
from benchmarks.fixtures import NOW
from bot import admin
from bot.core.clock import FixedClock
from bot.core.inbox import Dispatcher
from store.repo import open_store

ROUNDS = 5
PER_ROUND = 1000
MEMBER = "console:ana"


class Errbot:
    """errbot in a child process, ready to run rounds."""

    def __init__(self, inline: bool) -> None:
        command = [sys.executable, "-m", "benchmarks.errbot_echo", *(["--inline"] if inline else [])]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("errbot did not start")

    def rate(self, count: int) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return count / float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def _errbot_installed() -> bool:
    try:
        import errbot  # noqa: F401
    except ImportError:
        return False
    return True


def _cda_rate(dispatcher: Dispatcher, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        dispatcher.handle(message(MEMBER, "/cda help"))
    return count / (time.perf_counter() - started)


def bench() -> list[Figure]:
    print("Peer: a trivial command in-process", flush=True)
    peers: dict[str, Errbot] = {}
    if _errbot_installed():
        peers = {
            "errbot test backend !echo (default)": Errbot(False),
            "errbot !echo (BOT_ASYNC off)": Errbot(True),
        }
    else:
        print("  errbot is not installed (make bench installs the `bench` extra): no floor", flush=True)
    figures: list[Figure] = []
    rates: dict[str, list[float]] = {name: [] for name in peers}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for backend in backends():
                with fresh_database(backend, Path(folder), "peer") as engine:
                    with open_store(engine) as store:
                        admin.add_city(store, "home", "Home", "America/Chicago", NOW, None, "implementation")
                        admin.add_member(store, MEMBER, "home", NOW)
                    dispatcher = Dispatcher(engine, FixedClock(NOW))
                    _cda_rate(dispatcher, 200)  # warm: catalogs, statement caches, connections
                    ours = []
                    for _ in range(ROUNDS):
                        ours.append(_cda_rate(dispatcher, PER_ROUND))
                        for name, peer in peers.items():
                            rates[name].append(peer.rate(PER_ROUND))
                    floor = max((statistics.median(r) for r in rates.values() if r), default=None)
                    figures.append(
                        figure(
                            f"peer {label(backend)}: cda-bot /cda help in-process",
                            statistics.median(ours),
                            "/s",
                            round(floor) if floor else None,
                            floor=True,
                        )
                    )
        for name, measured in rates.items():
            figures.append(figure(f"peer: {name}", statistics.median(measured), "/s"))
    finally:
        for peer in peers.values():
            peer.close()
    return figures


if __name__ == "__main__":
    bench()
