"""Coach views on a generated program of 1,000 cities, 1,000,000 updates and 100,000 blockers.

Each figure is the median time of one command through the dispatcher, as `cda-bot say` runs it: the
message stored, scope resolved, the handler's queries, the reply written to the outbox and returned.
"""

import os

from benchmarks.common import Figure, backends, cached_program, figure, label, median_ms, message
from benchmarks.fixtures import LEAD, NOW, Program, coach, member, slug
from bot.core.clock import FixedClock
from bot.core.inbox import Dispatcher

PROGRAM = Program(
    cities=int(os.environ.get("BENCH_CITIES", 1000)),
    updates=int(os.environ.get("BENCH_UPDATES", 1_000_000)),
    blockers=int(os.environ.get("BENCH_BLOCKERS", 100_000)),
)
ALL_CITIES_MS = 250.0
ONE_CITY_MS = 5.0


def bench() -> list[Figure]:
    figures: list[Figure] = []
    for backend in backends():
        name = label(backend)
        print(
            f"Coach views, {name}: {PROGRAM.cities:,} cities, {PROGRAM.updates:,} updates, "
            f"{PROGRAM.blockers:,} blockers",
            flush=True,
        )
        engine = cached_program(backend, PROGRAM)
        dispatcher = Dispatcher(engine, FixedClock(NOW))

        def run(sender: str, words: str, dispatcher: Dispatcher = dispatcher) -> None:
            (reply, *_rest) = dispatcher.handle(message(sender, words))
            assert "wrong" not in reply.text, reply.text

        cases = [
            (f"/cda status, all {PROGRAM.cities:,} cities", LEAD, "/cda status", ALL_CITIES_MS, 5),
            ("/cda status, one city (coach names it)", LEAD, f"/cda status {slug(7)}", ONE_CITY_MS, 50),
            ("/cda status, a member's own city", member(7), "/cda status", ONE_CITY_MS, 50),
            ("/cda blockers, a member's own city", member(7), "/cda blockers", ONE_CITY_MS, 50),
            ("/cda updates, a member's own city", member(7), "/cda updates", ONE_CITY_MS, 50),
            (f"/cda quiet, all {PROGRAM.cities:,} cities", LEAD, "/cda quiet", ALL_CITIES_MS, 5),
            ("/cda digest, coach of 10 cities", coach(3), "/cda digest", ALL_CITIES_MS, 10),
            (f"/cda digest, all {PROGRAM.cities:,} cities", LEAD, "/cda digest", None, 3),
        ]
        for title, sender, words, target, times in cases:
            spent = median_ms(lambda s=sender, w=words: run(s, w), times)  # type: ignore[misc]
            figures.append(figure(f"views {name}: {title}", spent, "ms", target))
        engine.dispose()
    return figures


if __name__ == "__main__":
    bench()
