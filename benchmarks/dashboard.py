"""The coaches' page at the program's size: the portfolio of 80 cities with a year of updates, from the
session lookup to the finished HTML, on SQLite; and of 1,000 cities on PostgreSQL where TEST_DATABASE_URL
names a server (a scratch database is created and dropped). The issue's targets: under 200 ms for 80 cities
on SQLite, under 1 s for 1,000 on PostgreSQL. Figures only; nothing passes or fails.

    .venv/bin/python -m benchmarks.dashboard
"""

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert

from benchmarks.common import Figure, figure
from bot import admin
from bot.core.clock import FixedClock
from store.db import make_engine, upgrade
from store.models import Blocker, BlockerStatus, Update
from store.repo import Store, open_store
from store.scratch import scratch_postgres_database
from web import portfolio, routes
from web.routes import Pages
from web.signin import Opened, WebConfig, issue_link, redeem

NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
COACH = "console:portfolio-coach"
COUNTRIES = ["US", "CO", "BR", "MX", "AR", "CL", "PE", "GB", "ES", "PT", "CA", "EC"]
ZONES = {
    "US": "America/Chicago",
    "CO": "America/Bogota",
    "BR": "America/Sao_Paulo",
    "MX": "America/Mexico_City",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "PE": "America/Lima",
    "GB": "Europe/London",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "CA": "America/Toronto",
    "EC": "America/Guayaquil",
}
LANGUAGES = {"CO": "es", "MX": "es", "AR": "es", "CL": "es", "PE": "es", "ES": "es", "EC": "es"}
LANGUAGES |= {"BR": "pt", "PT": "pt"}


def seed_portfolio(
    store: Store, cities: int, now: datetime, weeks: int = 52, coach: str = COACH, every: bool = True
) -> None:
    """`cities` cities in 12 countries with a weekly session, `weeks` of updates (some cities gone quiet),
    open and resolved blockers, and `coach` coaching them (`every`: as the coach of all cities, else of
    these by name). The same every run (a fixed seed)."""
    chance = random.Random(13)
    updates: list[dict[str, object]] = []
    blockers: list[dict[str, object]] = []
    for n in range(cities):
        country = COUNTRIES[n % len(COUNTRIES)]
        slug = f"city-{n:04d}"
        city = admin.add_city(
            store,
            slug,
            f"City {n:04d}",
            ZONES[country],
            now - timedelta(days=7 * weeks),
            country,
            "implementation" if n % 3 else "capacity",
            LANGUAGES.get(country, "en"),
        )
        admin.add_session(
            store, slug, f"2026-09-0{1 + n % 5}T10:00", now, 60, None, "FREQ=WEEKLY", "2027-03-31"
        )
        # One city in six has gone quiet: nothing in its last few weeks.
        quiet_weeks = chance.randint(2, 6) if n % 6 == 0 else 0
        for week in range(quiet_weeks, weeks):
            for _ in range(chance.choice((0, 1, 2, 3, 4, 5))):
                at = now - timedelta(weeks=week, minutes=chance.randint(1, 7 * 24 * 60 - 1))
                updates.append(
                    {
                        "city_id": city.id,
                        "author": f"console:{slug}-0",
                        "text": f"progress in week {week}",
                        "platform": "console",
                        "created_at": at,
                    }
                )
        for b in range(chance.randint(0, 4)):
            opened = now - timedelta(days=chance.randint(1, 120))
            resolved = b % 2 == 1
            blockers.append(
                {"city_id": city.id, "author": f"console:{slug}-0", "text": f"waiting on data {b}",
                 "status": BlockerStatus.resolved if resolved else BlockerStatus.open, "opened_at": opened,
                 "resolved_at": opened + timedelta(days=3) if resolved else None,
                 "resolved_by": coach if resolved else None, "resolution_note": None}
            )  # fmt: skip
    for chunk in range(0, len(updates), 5000):
        store.session.execute(insert(Update), updates[chunk : chunk + 5000])
    if blockers:
        store.session.execute(insert(Blocker), blockers)
    slugs = [] if every else [f"city-{n:04d}" for n in range(cities)]
    admin.add_coach(store, coach, slugs, now, "Portfolio Coach")


def signed_in(engine: Engine, now: datetime, coach: str = COACH) -> str:
    """A session cookie for `coach`, as opening a `/cda dashboard` link gives it."""
    config = WebConfig()
    with open_store(engine) as store:
        link = issue_link(store, coach, "en", now, config)
    with open_store(engine) as store:
        opened = redeem(store, link.rsplit("/", 1)[1], now, config)
    assert isinstance(opened, Opened), opened
    return opened.token


def timed(action: Callable[[], object], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def report(name: str, spent: list[float], target_ms: float | None = None) -> None:
    spent = sorted(spent)
    p95 = spent[max(int(len(spent) * 0.95) - 1, 0)]
    target = f"  (target < {target_ms:.0f} ms)" if target_ms else ""
    median = statistics.median(spent)
    print(f"  {name:<46} n={len(spent):>3}  median {median:7.1f} ms  p95 {p95:7.1f} ms{target}")


def bench_portfolio(label: str, url: str, cities: int, target_ms: float, times: int = 20) -> list[Figure]:
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    with open_store(engine) as store:
        seed_portfolio(store, cities, NOW)
    seeded = time.perf_counter() - started
    cookie = signed_in(engine, NOW)
    pages = Pages(engine, FixedClock(NOW), WebConfig(), lambda: None)
    print(f"{label}: the coaches' page, {cities} cities with a year of updates (seeded in {seeded:.1f} s)")

    def page(params: dict[str, str]) -> Callable[[], object]:
        def render() -> None:
            response = pages._portfolio(cookie, params)
            assert response.status_code == 200 and response.body.count(b'class="sparkline"') > 0

        return render

    page({})()  # the first render compiles the templates and loads the catalogs: not what a coach waits for
    whole = timed(page({}), times)
    report(f"portfolio, all {cities} cities", whole, target_ms)

    def forgetting() -> None:
        # As after a restart, or the first load of a day: no next session or session line remembered.
        portfolio._next.clear()
        routes._session_text.cache_clear()
        page({})()

    report("portfolio, all, nothing remembered yet", timed(forgetting, max(times // 4, 3)))
    report("portfolio, sorted by open blockers", timed(page({"sort": "-blockers"}), times))
    report("portfolio, one country", timed(page({"country": "CO"}), times))
    city = timed(lambda: pages._city(cookie, "city-0001", {}, csv=False), times)
    report("a city's page (28 days)", city)
    engine.dispose()
    return [
        figure(
            f"coaches' page {label}: portfolio of {cities} cities", statistics.median(whole), "ms", target_ms
        ),
        figure(f"coaches' page {label}: a city's page", statistics.median(city), "ms"),
    ]


def bench() -> list[Figure]:
    """The portfolio for 80 cities on SQLite, and for 1,000 on PostgreSQL where TEST_DATABASE_URL is set."""
    found: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        found += bench_portfolio("SQLite", f"sqlite:///{Path(folder) / 'dashboard.db'}", 80, 200)
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        with scratch_postgres_database(server, "cda_bench") as url:
            found += bench_portfolio("PostgreSQL", url, 1000, 1000, times=10)
    return found


if __name__ == "__main__":
    bench()
