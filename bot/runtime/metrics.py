"""Prometheus metrics, served at `GET /metrics` by `build_app`; every metric of the bot is defined here.

Labels are bounded by construction, and none names a city, a person or a conversation: `route` is the
route's path template (`/dashboard/city/{slug}`, never the path asked for; `unmatched` for anything no
route matches), `platform` an adapter's name, `status` a status code the app sent, `state` an outbox
state. Scraped on the bot's own port, so the proxy in front must not forward `/metrics` (deploy/).

One process, one set of counters, except under `serve --workers N` (bot/runtime/workers.py), which
sets `PROMETHEUS_MULTIPROC_DIR` for its workers: prometheus-client's multiprocess mode then keeps each
worker's counters in files there, and whichever worker is scraped adds them all up. The process's own
figures (memory, CPU, collections) are left out in that mode, being one worker's; replicas are still
scraped each on its own."""

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.models import OutboxStatus

log = logging.getLogger("cda_bot.metrics")

# Our own registry rather than prometheus-client's global one, so /metrics shows exactly what is listed
# here and nothing a library might register; the process collectors (memory, CPU, open files, GC) are
# the library's usual ones.
REGISTRY = CollectorRegistry()
# No `*_created` timestamp beside every counter and histogram: twice the series, and Prometheus's text
# format has no use for them.
disable_created_metrics()
# Read where prometheus-client reads it, when it is first imported.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
for _collector in (
    (PLATFORM_COLLECTOR,) if MULTIPROCESS else (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
):
    REGISTRY.register(_collector)

NO_PLATFORM = "none"  # the bot's own routes: health, readiness, metrics, the coaches' page
UNMATCHED = "unmatched"

# Slack's deadline is 3 s, Teams' and Twilio's 15 s; the target for an acknowledgement is 50 ms.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0)
# A pass runs every minute; the targets are 200 ms with nothing new and 2 s for 10,000 cities.
PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)

HTTP_REQUESTS = Counter(
    "cda_bot_http_requests",
    "HTTP requests answered, by route template, platform and status code",
    ["route", "platform", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "cda_bot_http_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer, by route template and platform",
    ["route", "platform"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
SENDS = Counter(
    "cda_bot_sends", "Outbox messages a platform accepted, by platform", ["platform"], registry=REGISTRY
)
SEND_FAILURES = Counter(
    "cda_bot_send_failures",
    "Sends that failed, by platform and what became of the message (retrying, or failed for good)",
    ["platform", "outcome"],
    registry=REGISTRY,
)
SCHEDULER_PASS_SECONDS = Histogram(
    "cda_bot_scheduler_pass_duration_seconds",
    "How long a scheduler pass took to plan what is due",
    buckets=PASS_BUCKETS,
    registry=REGISTRY,
)
DELIVERY_PROCESS_EXITS = Counter(
    "cda_bot_delivery_process_exits",
    "Delivery processes (serve --delivery-process) that ended while the server ran, each started again",
    registry=REGISTRY,
)

RETRYING, FAILED = "retrying", "failed"


def send_failed(platform: str, final: bool) -> None:
    SEND_FAILURES.labels(platform, FAILED if final else RETRYING).inc()


# -- sends counted in a delivery process (`serve --delivery-process`) ----------------------------------
# The child counts its sends in its own registry and reports them to the server, which adds them to its
# own: one process to scrape, as without the option. A report is a map of counter and labels ("sends|slack",
# "send_failures|slack|retrying") to how much to add.
_SEND_COUNTERS = {"sends": SENDS, "send_failures": SEND_FAILURES}


def send_totals() -> dict[str, float]:
    """This process's send counters as they stand, keyed as a report keys them."""
    totals: dict[str, float] = {}
    for name, counter in _SEND_COUNTERS.items():
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    totals["|".join((name, *sample.labels.values()))] = sample.value
    return totals


def add_sends(report: Mapping[str, float]) -> None:
    """Add what a delivery process reported. ValueError, and nothing added, for a report that is not one."""
    additions = []
    for key, amount in report.items():
        name, *labels = key.split("|")
        counter = _SEND_COUNTERS.get(name)
        if counter is None or not isinstance(amount, int | float) or not 0 < amount < float("inf"):
            raise ValueError(f"not a send count: {key!r}")
        additions.append((counter.labels(*labels), amount))  # ValueError for the wrong number of labels
    for series, amount in additions:
        series.inc(amount)


# -- requests -----------------------------------------------------------------------------------------
def route_template(routes: Sequence[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, str]:
    """The route that will answer `scope`, the way Starlette's router picks it (a full match first, else
    a partial one: a known path asked with the wrong method), and its path template."""
    partial: tuple[BaseRoute, Scope] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, _template(route, {**scope, **child})
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        return partial[0], _template(partial[0], {**scope, **partial[1]})
    return None, UNMATCHED


def _template(route: BaseRoute, scope: Scope) -> str:
    if isinstance(route, Mount) and route.routes:
        _, inner = route_template(route.routes, scope)
        return route.path + inner if inner != UNMATCHED else route.path_format
    if isinstance(route, Route | Mount):
        return route.path_format
    return UNMATCHED  # a kind of route without a path (a Host): nothing safe to name it by


class RequestMetrics:
    """ASGI middleware counting and timing requests by route template and platform. Plain ASGI rather
    than `BaseHTTPMiddleware`, which would put every request through an extra task and stream.

    `routes` are the app's, in its order; `platforms` maps the `id()` of each adapter's route to the
    adapter's platform (routes compare by value, so they cannot be keys themselves)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], platforms: Mapping[int, str]) -> None:
        self.app = app
        self.routes = routes
        self.platforms = platforms
        # Matching the routes again costs 10-30 µs a request (measured); nearly every request is to one
        # of a few webhook paths, so what they matched is kept, in a cache bounded against odd paths.
        self._labels = functools.lru_cache(maxsize=256)(self._match)

    def _match(self, path: str, root_path: str, method: str) -> tuple[str, str]:
        # What Route and Mount match on; a Host route (matching on headers) is not used here.
        scope = {"type": "http", "path": path, "root_path": root_path, "method": method, "headers": []}
        matched, route = route_template(self.routes, scope)
        return route, self.platforms.get(id(matched), NO_PLATFORM)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, platform = self._labels(scope["path"], scope.get("root_path", ""), scope["method"])
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response
        answered: float | None = None

        async def sending(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Background tasks run after this; the platform has its answer, so the clock stops.
                answered = time.perf_counter()

        try:
            await self.app(scope, receive, sending)
        finally:
            HTTP_REQUESTS.labels(route, platform, str(status)).inc()
            HTTP_SECONDS.labels(route, platform).observe((answered or time.perf_counter()) - started)


# -- what is read when scraped ------------------------------------------------------------------------
# Depth is what is waiting or stuck. `sent` and `dropped` rows are history that grows for ever: counting
# them would make every scrape slower as the bot ages (sends are the `cda_bot_sends` counter instead).
DEPTH_STATES = (OutboxStatus.pending, OutboxStatus.sending, OutboxStatus.failed)
# The states are the enum's own values, not input: written into the statement so that one string suits
# both drivers' parameter styles. The (status, next_attempt_at) index finds these rows without reading
# the others: 2 ms on PostgreSQL, 1.5 ms on SQLite beside a million sent rows (measured).
_DEPTH_SQL = "SELECT status, COUNT(*) FROM outbox WHERE status IN ({}) GROUP BY status".format(
    ", ".join(f"'{state.value}'" for state in DEPTH_STATES)
)
COUNT_SECONDS = 1.0  # a scrape waits this long for the outbox count, then goes on without it


class OutboxDepth:
    """Outbox rows by state, counted once per scrape in one grouped query: off the event loop, given up
    after `timeout` (the scrape then says `cda_bot_outbox_depth_ok 0`), and never more than one count
    running, so a slow database is not sent a pile of them."""

    def __init__(self, engine: Engine, timeout: float = COUNT_SECONDS) -> None:
        self.engine = engine
        self.timeout = timeout
        self._running: asyncio.Future[dict[str, int]] | None = None

    async def counts(self) -> dict[str, int] | None:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self.count))
        try:
            # Shielded: a count that outlasts one scrape keeps running and the next scrape waits for it.
            return await asyncio.wait_for(asyncio.shield(self._running), self.timeout)
        except Exception as error:
            log.warning("outbox depth not counted", extra={"error": type(error).__name__})
            return None

    def count(self) -> dict[str, int]:
        # A raw connection, outside SQLAlchemy's transactions: on SQLite those begin IMMEDIATE (store/db.py)
        # and would take the write lock for a read, where an autocommit SELECT reads a WAL snapshot.
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if self.engine.dialect.name == "postgresql":
                # Bounded on the server too, so an abandoned count does not run on; rolled back with the
                # transaction when the connection goes back to the pool.
                cursor.execute(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")
            cursor.execute(_DEPTH_SQL)
            found = {str(state): int(count) for state, count in cursor.fetchall()}
        finally:
            connection.close()
        return {state.value: found.get(state.value, 0) for state in DEPTH_STATES}


class _Scrape:
    """One scrape: the registry's metrics and what was read for this scrape."""

    def __init__(self, depth: Mapping[str, int] | None, backlog: Mapping[str, int]) -> None:
        self.depth = depth
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        if MULTIPROCESS:
            # Every worker's counters, from their files; this process's own would be a share of them.
            workers = CollectorRegistry()
            multiprocess.MultiProcessCollector(workers)
            yield from workers.collect()
            yield from PLATFORM_COLLECTOR.collect()
        else:
            yield from REGISTRY.collect()
        family = GaugeMetricFamily(
            "cda_bot_outbox_depth",
            "Outbox messages waiting (pending), being sent, or failed",
            labels=["state"],
        )
        for state, count in (self.depth or {}).items():
            family.add_metric([state], count)
        yield family
        yield GaugeMetricFamily(
            "cda_bot_outbox_depth_ok",
            "1 if the outbox was counted for this scrape, 0 if the database did not answer in time",
            value=0 if self.depth is None else 1,
        )
        if MULTIPROCESS:
            return  # the backlog is each worker's, published to the files (`publishing`)
        for name, (key, text) in BACKLOG.items():
            yield GaugeMetricFamily(name, text, value=self.backlog.get(key, 0))


# What this process holds, read at each scrape; under `serve --workers N`, published by each worker
# every second and added up at the scrape.
# The metric's name → the backlog's key, and its help.
BACKLOG = {
    "cda_bot_inbox_backlog": ("inbox", "Stored messages the server has accepted and not yet handled"),
    "cda_bot_outbox_in_flight": (
        "outbox_in_flight",
        "Outbox messages the server has claimed and not recorded as sent or failed",
    ),
}
PUBLISH_SECONDS = 1.0


async def publishing(backlog: Callable[[], Mapping[str, int]]) -> None:
    """Under `serve --workers N`: this worker's backlog, in its files, every second until cancelled."""
    gauges = {
        key: Gauge(name, text, multiprocess_mode="livesum", registry=None)
        for name, (key, text) in BACKLOG.items()
    }
    while True:
        now = backlog()
        for key, gauge in gauges.items():
            gauge.set(now.get(key, 0))
        await asyncio.sleep(PUBLISH_SECONDS)


@contextlib.asynccontextmanager
async def published(backlog: Callable[[], Mapping[str, int]]) -> AsyncIterator[None]:
    """`publishing` while the block runs, where workers share their metrics; nothing otherwise."""
    if not MULTIPROCESS:
        yield
        return
    task = asyncio.get_running_loop().create_task(publishing(backlog), name="metrics-backlog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def metrics_route(engine: Engine, backlog: Callable[[], Mapping[str, int]]) -> Route:
    """`GET /metrics`. `backlog` is read on the event loop, where the queues it counts change."""
    depth = OutboxDepth(engine)

    async def metrics(_: Request) -> Response:
        now = dict(backlog())
        counted = await depth.counts()
        # Rendering takes 4-5 ms (measured, a few hundred series): not on the loop, where it would
        # hold up every acknowledgement in the meantime.
        body = await asyncio.to_thread(generate_latest, _Scrape(counted, now))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])
