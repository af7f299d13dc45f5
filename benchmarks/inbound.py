"""Inbound through the real server: signed Slack `message` events with unique ids, sent over keep-alive
HTTP/1.1 to the apps of one run, interleaved — a bare Starlette endpoint that only checks the
signature, a Bolt app whose handler does nothing, a Bolt app that answers as cda-bot does and stores
nothing (its figure is the rate its answers reach the fake Web API), and `cda-bot serve` with its full
path (stored before the acknowledgement, reply through the outbox to a local fake Web API), alone and
with `--delivery-process` (handling and sends in a second process). WhatsApp and Teams likewise, each beside a
bare check of its signature or token and that check answering as cda-bot does, storing nothing.

Saturation: events/s with 64 connections kept busy (one told 503 waits 0.1 s before its next).
Acknowledgement: p50/p99 at a fixed offered rate, started once the saturation run's events are all
answered (open loop: each event is due at its own instant and its latency counts from then, so
queueing shows), in every round, over the events of all rounds: one 8 s run's p99 moves by 2x or more
from run to run.
At the end every event cda-bot acknowledged must be stored once and answered once."""

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, text
from twilio.request_validator import RequestValidator

from benchmarks.common import Figure, backends, figure, fresh_database, label
from benchmarks.fake_platforms import TEAMS_ISSUER
from bot import admin
from store.db import make_engine, upgrade
from store.repo import Store, open_store
from tests.tls import self_signed

SECRET = "bench-signing-secret"
TEAM = "T0001"
CHANNELS = 2000  # Slack takes one message a second per channel: the replies need channels to go to
CONNECTIONS = 64
# How long each platform waits for its acknowledgement before it counts the delivery as failed.
SLACK_DEADLINE, TEAMS_DEADLINE, TWILIO_DEADLINE = 3.0, 15.0, 15.0
REFUSED_PAUSE = 0.1  # seconds a saturating connection waits after a 503
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, and never one given before in this run: nothing holds a port between
    this and its server's start, so the system may give the same number twice, and a server that cannot
    bind it would leave another server of the run answering in its place."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def signed_request(n: int, stamp: str) -> tuple[str, bytes]:
    channel = f"C{n % CHANNELS:05d}"
    event_id = f"Ev{n:012d}"
    body = json.dumps(
        {
            "token": "unused",
            "team_id": TEAM,
            "api_app_id": "A0001",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}],
            "event": {
                "type": "message",
                "channel": channel,
                "channel_type": "channel",
                "user": f"U{n % 5000:05d}",
                "text": f"update: bench event {n}",
                "ts": f"{1_700_000_000 + n}.000100",
                "event_ts": f"{1_700_000_000 + n}.000100",
            },
        }
    ).encode()
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: v0={digest}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return event_id, head.encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def send(self, request: bytes) -> int:
        """The status of the answer; 0 when the server closed the connection instead, twice. A
        connection left idle past the server's keep-alive is closed by it: the request is sent again
        on a new one, as a platform's HTTP client does (the event id makes a repeat harmless)."""
        for _ in range(2):
            try:
                return await self._exchange(request)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.writer.close()
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return 0

    async def _exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        if status == 200 and b"<Message>" in body:
            # WhatsApp's answer when a message could not be stored: TwiML telling the sender nothing
            # was saved (Twilio would not send it again after a 503). Not an acknowledgement.
            return 503
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # ms, every answer
    # ms, the 200s only: a quick 503 is not an acknowledgement (the platform sends the event again
    # later), and counted with them it would make a server that refuses more look faster.
    ack_latencies: list[float] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # event ids answered 200

    def count(self, status: int, event_id: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.acknowledged.append(event_id)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


async def saturate(
    port: int | Sequence[int], requests: Iterator[tuple[str, bytes]], seconds: float
) -> tuple[float, Tally]:
    """Events/s with CONNECTIONS connections kept busy for `seconds`; with several ports (replicas),
    the connections are spread over them evenly, as a load balancer would."""
    tally = Tally()
    deadline = time.perf_counter() + seconds
    ports = [port] if isinstance(port, int) else list(port)

    async def worker(n: int) -> None:
        conn = await Connection.open(ports[n % len(ports)])
        try:
            while time.perf_counter() < deadline:
                event_id, request = next(requests)
                status = await conn.send(request)
                tally.count(status, event_id)
                if status == 503:
                    # Told to retry later, a platform waits (Slack a minute at least); one that came
                    # straight back would measure how fast refusals go, not messages.
                    await asyncio.sleep(REFUSED_PAUSE)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONNECTIONS)))
    return sum(tally.statuses.values()) / (time.perf_counter() - started), tally


async def offered(port: int, requests: Iterator[tuple[str, bytes]], rate: float, seconds: float) -> Tally:
    """Open loop: event i is due at start + i/rate; its latency runs from then to its answer."""
    tally = Tally()
    idle: list[Connection] = [await Connection.open(port) for _ in range(CONNECTIONS)]
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)

    async def one(due: float, event: tuple[str, bytes]) -> None:
        conn = idle.pop() if idle else await Connection.open(port)
        status = await conn.send(event[1])
        took = (time.perf_counter() - due) * 1000
        tally.latencies.append(took)
        if status == 200:
            tally.ack_latencies.append(took)
        tally.count(status, event[0])
        idle.append(conn)

    tasks = []
    for i in range(total):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(one(due, next(requests))))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return tally


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


@dataclass
class FixedRate:
    """A server's acknowledgements at the fixed offered rate, over all its runs. Each run starts from a
    server with nothing left to handle or send (the caller drains it first): what a saturation run left
    behind would otherwise be counted against the rate."""

    server: str  # for the progress lines
    latencies: list[float] = field(default_factory=list)  # ms, of the events acknowledged (200)
    refused: int = 0  # not 200

    def run(self, port: int, requests: Iterator[tuple[str, bytes]], rate: float, seconds: float) -> list[str]:
        """One more run; the events it acknowledged."""
        time.sleep(1)
        tally = asyncio.run(offered(port, requests, rate, seconds))
        self.latencies += tally.ack_latencies
        self.refused += sum(v for k, v in tally.statuses.items() if k != 200)
        p99 = percentile(tally.ack_latencies, 0.99)
        print(f"    {self.server} at {rate:g}/s offered: ack p99 {p99:.0f} ms", flush=True)
        return tally.acknowledged

    def figures(self, prefix: str, rate: float, variant: str = "") -> list[Figure]:
        found = []
        if not variant:  # the variants' p50s would only lengthen the table
            found.append(
                figure(f"{prefix} ack p50 at {rate:g}/s offered", percentile(self.latencies, 0.5), "ms")
            )
        return [
            *found,
            figure(
                f"{prefix} ack p99 at {rate:g}/s offered{variant}", percentile(self.latencies, 0.99), "ms", 50
            ),
            figure(f"{prefix} refused (503) at {rate:g}/s offered{variant}", self.refused, "events"),
        ]


@dataclass
class Overload:
    """A server at twice what it sustained, then at a trickle."""

    late: int  # answered after the platform's deadline, at twice capacity
    refused: int
    recovered: float  # share answered 200 at the trickle after the overload
    acknowledged: list[str]


def overload(
    port: int, requests: Iterator[tuple[str, bytes]], capacity: float, seconds: float, deadline_s: float
) -> Overload:
    # Twice what it sustains: refused early with 503, never answered late, nothing lost.
    over = asyncio.run(offered(port, requests, max(2 * capacity, 50.0), seconds))
    time.sleep(2)
    after = asyncio.run(offered(port, requests, 20, 2))
    return Overload(
        late=sum(1 for v in over.latencies if v > deadline_s * 1000),
        refused=sum(v for k, v in over.statuses.items() if k != 200),
        recovered=after.ok / max(1, sum(after.statuses.values())),
        acknowledged=over.acknowledged + after.acknowledged,
    )


def overload_figures(prefix: str, run: Overload, deadline_s: float) -> list[Figure]:
    return [
        figure(f"{prefix} at 2x capacity, answered after {deadline_s:g} s", run.late, "events", 0),
        figure(f"{prefix} at 2x capacity, refused with 503", run.refused, "events"),
        figure(f"{prefix} after overload, share answered 200", run.recovered, "x", 1.0, floor=True),
    ]


@dataclass
class AgainstFloor:
    floor: float  # events/s of the bare endpoint, the best round
    answering: float  # events/s answered by the answering floor, the best round
    cda: float  # events/s stored and answered, the best round
    fixed: FixedRate  # cda-bot at the fixed rate, every round
    over: Overload  # the last round's overload
    cda2: float  # events/s stored and answered with --delivery-process, the best round
    fixed_cda2: FixedRate  # and at the fixed rate, every round
    acknowledged: list[str]
    lost: int  # acknowledged and not stored
    unanswered: int  # acknowledged and not answered


@dataclass
class Load:
    """What the servers of one platform's run share: the database and the servers' settings, the
    folder for their logs, the signed requests, how long each run lasts and the fixed rate offered, and
    every event acknowledged so far (all checked at the end)."""

    engine: Engine
    env: dict[str, str]
    folder: Path
    requests: Iterator[tuple[str, bytes]]
    seconds: float
    rate: float
    platform: str = "slack"
    acknowledged: list[str] = field(default_factory=list)


def second_core(serve: list[str], port: int, load: Load, fixed: FixedRate, settle: float = 0.0) -> float:
    """`serve` with a second core (`--delivery-process`, `--workers 2`) saturated, then at the fixed
    rate (into `fixed`); what it acknowledged added to the load's, and all of it answered before this
    returns. Events/s acknowledged at saturation."""
    with process(serve, port, load.env, load.folder, "/readyz"):
        time.sleep(settle)
        _, tally = asyncio.run(saturate(port, load.requests, load.seconds))
        accepted_or_shed(tally, f"{load.platform} {serve[5:]}")
        load.acknowledged += tally.acknowledged
        drain(load.engine, load.acknowledged, platform=load.platform)
        load.acknowledged += fixed.run(port, load.requests, load.rate, load.seconds)
        drain(load.engine, load.acknowledged, platform=load.platform)
    return tally.ok / load.seconds


def delivery_process_figures(prefix: str, run: AgainstFloor, rate: float) -> list[Figure]:
    return [
        figure(f"{prefix} cda-bot --delivery-process, stored and answered", run.cda2, "ev/s"),
        *run.fixed_cda2.figures(prefix, rate, ", --delivery-process"),
    ]


def serve_command(url: str, port: int, *options: str) -> list[str]:
    # `serve --port N` first: resident_mb finds the server by it.
    return [PYTHON, "-m", "bot.cli", "--db", url, "serve", "--port", str(port), "--no-scheduler", *options]


def against_floor(
    url: str,
    platform: str,
    floor_app: str,
    env: dict[str, str],
    folder: Path,
    requests: Iterator[tuple[str, bytes]],
    seconds: float,
    rate: float,
    rounds: int,
    deadline_s: float,
    answering: tuple[str, int, str],
) -> AgainstFloor:
    """Rounds of a bare endpoint (`floor_app`), an answering floor (its app, the fake platform's port,
    the call that ends an answer: `answered_rate`), and then `cda-bot serve` on the
    database at `url`, each saturated, then at a fixed offered rate, and in the last round overloaded;
    then `serve --delivery-process` likewise, without the overload; then every
    acknowledged event checked. A floor that refuses anything, or cda-bot
    answering other than 200 or 503, means the set-up is wrong, not that a server is slow: no figure
    from it."""
    engine = make_engine(url)
    floor_port, answering_port, cda_port, cda2_port = free_port(), free_port(), free_port(), free_port()
    serve = serve_command(url, cda_port)
    best_floor = best_cda = best_answering = best_cda2 = 0.0
    fixed, fixed_cda2 = FixedRate(f"{platform} cda-bot"), FixedRate(f"{platform} cda-bot --delivery-process")
    acknowledged: list[str] = []
    load = Load(engine, env, folder, requests, seconds, rate, platform, acknowledged)
    over: Overload | None = None
    for round_ in range(rounds):
        with process(uvicorn_args(floor_app, floor_port), floor_port, env, folder):
            floor_rate, floor = asyncio.run(saturate(floor_port, requests, seconds))
        only_200(floor, floor_app)
        app, fake_port, last_call = answering
        with process(uvicorn_args(app, answering_port), answering_port, env, folder):
            answered = answered_rate(answering_port, fake_port, requests, seconds, last_call)
            best_answering = max(best_answering, answered)
        with process(serve, cda_port, env, folder, "/readyz"):
            _, tally = asyncio.run(saturate(cda_port, requests, seconds))
            acknowledged += tally.acknowledged
            drain(engine, acknowledged, platform=platform)  # the fixed rate starts from nothing waiting
            acknowledged += fixed.run(cda_port, requests, rate, seconds)
            if round_ == rounds - 1:
                over = overload(cda_port, requests, max(best_cda, tally.ok / seconds), seconds, deadline_s)
                acknowledged += over.acknowledged
            drain(engine, acknowledged, platform=platform)
        accepted_or_shed(tally, f"{platform} cda-bot")
        best_floor, best_cda = max(best_floor, floor_rate), max(best_cda, tally.ok / seconds)
        second = second_core(serve_command(url, cda2_port, "--delivery-process"), cda2_port, load, fixed_cda2)
        best_cda2 = max(best_cda2, second)
    assert over is not None
    lost, unanswered = missing(engine, acknowledged, platform)
    engine.dispose()
    return AgainstFloor(
        best_floor,
        best_answering,
        best_cda,
        fixed,
        over,
        best_cda2,
        fixed_cda2,
        acknowledged,
        lost,
        unanswered,
    )


@contextmanager
def process(
    args: list[str], port: int, env: dict[str, str], cwd: Path, ready_path: str = ""
) -> Iterator[None]:
    # The server's log goes to a file: a pipe nobody reads fills up and stalls the server.
    log = (cwd / f"{Path(args[2]).name}-{port}.log").open("wb")
    child = subprocess.Popen(args, env={**os.environ, **env}, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if ready_path:
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1).read()
                    # With --delivery-process, load waits for the child too: it would start under it.
                    if json.loads(body).get("delivery_process", "running") != "running":
                        raise OSError("the delivery process is starting")
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    said = Path(log.name).read_bytes()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"{args[2:5]} did not start: {said}") from None
                time.sleep(0.1)
        yield
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
        log.close()


def uvicorn_args(app: str, port: int) -> list[str]:
    return [PYTHON, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning", "--no-access-log"]


def seed(url: str) -> None:
    """CHANNELS cities, each bound to a Slack channel the benchmark's events come from."""
    seed_cities(
        url,
        CHANNELS,
        "c",
        "America/Bogota",
        "es",
        lambda store, n, slug, now: admin.bind(store, f"slack:{TEAM}:C{n:05d}", slug, now),
    )


def seed_cities(
    url: str,
    count: int,
    place: str,
    zone: str,
    language: str,
    join: Callable[[Store, int, str, datetime], object],
) -> None:
    """`count` cities on a migrated database, each with what `join` gives it (a channel, a member)."""
    engine = make_engine(url)
    upgrade(engine)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    with open_store(engine) as store:
        for n in range(count):
            slug = f"{place}{n:05d}"
            admin.add_city(store, slug, f"City {n}", zone, now, None, "implementation", language)
            join(store, n, slug, now)
    engine.dispose()


def missing(engine: Engine, acknowledged: list[str], platform: str = "slack") -> tuple[int, int]:
    """Of the events acknowledged with 200: how many are not stored, and how many not answered. A reply's
    key is `reply|<platform>|<message id>|<n>`, and a message id may hold a `|` itself (Teams)."""
    prefix = f"reply|{platform}|"
    with engine.connect() as db:
        query = text("select message_id from inbox where platform = :platform")
        stored = set(db.execute(query, {"platform": platform}).scalars())
        sent = text("select key from outbox where status = 'sent' and kind = 'reply' and key like :prefix")
        answered = {
            key[len(prefix) :].rsplit("|", 1)[0]
            for key in db.execute(sent, {"prefix": prefix + "%"}).scalars()
        }
    return sum(1 for e in acknowledged if e not in stored), sum(1 for e in acknowledged if e not in answered)


def resident_mb(port: int) -> float:
    """Resident memory of the server listening on `port` (Linux)."""
    found = subprocess.run(["pgrep", "-f", "--", f"serve --port {port}"], capture_output=True, text=True)
    pid = found.stdout.split()[0]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def only_200(tally: Tally, server: str) -> None:
    """A floor answers every event 200: anything else means the set-up is wrong (a stale signature, a
    server that did not start), not that it is slow, and its figure would mean nothing."""
    if set(tally.statuses) != {200}:
        raise RuntimeError(f"{server} answered {tally.statuses}")


def accepted_or_shed(tally: Tally, server: str) -> None:
    """cda-bot answers 200, or 503 past its capacity: anything else means the set-up is wrong, and its
    figures would mean nothing."""
    if set(tally.statuses) - {200, 503}:
        raise RuntimeError(f"unexpected answers from {server}: {tally.statuses}")


def answered_rate(
    port: int, fake_port: int, requests: Iterator[tuple[str, bytes]], seconds: float, last_call: str
) -> float:
    """Events/s a server acknowledges and answers, where it queues answers without bound (the answering
    floors): the events it acknowledged in a saturation run, over the time until the fake platform had
    the last of their `last_call` (as the fake counts calls: Slack's ✅, the second call of each answer,
    is `reactions.add`; a Teams reply is `teams`)."""

    def answered() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/counts", timeout=5) as answer:
            return int(json.load(answer).get(last_call, 0))

    before = answered()
    started = time.perf_counter()
    _, tally = asyncio.run(saturate(port, requests, seconds))
    only_200(tally, "the answering floor")
    deadline = time.monotonic() + 120
    while answered() - before < tally.ok:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the answering floor answered {answered() - before} of {tally.ok}")
        time.sleep(0.02)
    return tally.ok / (time.perf_counter() - started)


def drain(engine: Engine, acknowledged: list[str], seconds: float = 120, platform: str = "slack") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and missing(engine, acknowledged, platform)[1]:
        time.sleep(1)


def slack_env(fake_port: int) -> dict[str, str]:
    """`serve`'s settings for Slack, its Web API the fake on `fake_port`."""
    return {
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_BOT_TOKEN": "xoxb-bench-not-real",
        "SLACK_API_BASE_URL": f"http://127.0.0.1:{fake_port}/api/",
        "PYTHONPATH": str(ROOT),
    }


def slack(backend: str, url: str, seconds: float = 8.0, rate: float = 500.0, rounds: int = 2) -> list[Figure]:
    """Slack inbound on one database, beside the floors, plus overload, memory and start-up."""
    name = label(backend)
    folder = Path(tempfile.mkdtemp(prefix="cda-inbound-"))
    seed(url)
    engine = make_engine(url)
    fake_port = free_port()
    ports = {"bare": free_port(), "bolt": free_port(), "answering": free_port(), "cda": free_port()}
    ports["cda2"] = free_port()
    ports["workers"] = free_port()
    replicas = [free_port(), free_port()]  # PostgreSQL only: two servers on one database
    numbers = iter(range(10**9))
    # Signed when sent, as Slack does: a run lasts minutes, and a signature over five minutes old is refused.
    requests = (signed_request(next(numbers), str(int(time.time()))) for _ in iter(int, 1))
    env = slack_env(fake_port)
    serve = serve_command(url, ports["cda"])
    # The same with the sends in a process of their own (a second core), and in two processes.
    variants = {"cda2": ("--delivery-process",), "workers": ("--workers", "2")}
    best: dict[str, float] = {}
    acknowledged: list[str] = []
    load = Load(engine, env, folder, requests, seconds, rate, acknowledged=acknowledged)
    seen: dict[str, float] = {}
    fixed = {
        app: FixedRate(" ".join(("slack cda-bot", *variants.get(app, ())))) for app in ("cda", *variants)
    }
    over: Overload | None = None
    with process(uvicorn_args("benchmarks.fake_platforms:app", fake_port), fake_port, env, folder):
        apps = ["bare", "bolt", "answering", "cda", "cda2", "workers"]
        if backend == "postgresql":
            apps.append("replicas")
        for round_ in range(rounds):  # interleaved, so a busy moment of the machine hits every app alike
            for app in apps:
                if app == "replicas":
                    with contextlib.ExitStack() as both:
                        for port in replicas:
                            both.enter_context(
                                process(
                                    serve_command(url, port),
                                    port,
                                    env,
                                    folder,
                                    "/readyz",
                                )
                            )
                        _, tally = asyncio.run(saturate(replicas, requests, seconds))
                        best["replicas"] = max(best.get("replicas", 0.0), tally.ok / seconds)
                        acknowledged += tally.acknowledged
                        drain(engine, acknowledged)
                    continue
                port = ports[app]
                started = time.perf_counter()
                if app in variants:
                    second = second_core(
                        serve_command(url, port, *variants[app]),
                        port,
                        load,
                        fixed[app],
                        settle=2 if app == "workers" else 0,  # the second worker may still be starting
                    )
                    best[app] = max(best.get(app, 0.0), second)
                    continue
                if app == "cda":
                    context = process(serve, port, env, folder, "/readyz")
                else:
                    context = process(uvicorn_args(f"benchmarks.floors:{app}_app", port), port, env, folder)
                with context:
                    if app == "answering":
                        answered = answered_rate(port, fake_port, requests, seconds, "reactions.add")
                        best[app] = max(best.get(app, 0.0), answered)
                        continue
                    if app != "cda":
                        floor_rate, tally = asyncio.run(saturate(port, requests, seconds))
                        only_200(tally, app)
                        best[app] = max(best.get(app, 0.0), floor_rate)
                        continue
                    seen["start_s"] = time.perf_counter() - started
                    seen["idle_mb"] = resident_mb(port)
                    _, tally = asyncio.run(saturate(port, requests, seconds))
                    seen["loaded_mb"] = resident_mb(port)
                    best["cda"] = max(best.get("cda", 0.0), tally.ok / seconds)
                    acknowledged += tally.acknowledged
                    drain(engine, acknowledged)
                    acknowledged += fixed["cda"].run(port, requests, rate, seconds)
                    if round_ == rounds - 1:
                        over = overload(port, requests, best["cda"], seconds, SLACK_DEADLINE)
                        acknowledged += over.acknowledged
                    drain(engine, acknowledged)
    lost, unanswered = missing(engine, acknowledged)
    engine.dispose()
    assert over is not None
    target = 1500 if backend == "sqlite" else 1000
    return [
        figure(f"inbound {name}: bare signature check", best["bare"], "ev/s", note="floor"),
        figure(f"inbound {name}: do-nothing Bolt app", best["bolt"], "ev/s", note="floor"),
        figure(f"inbound {name}: cda-bot, stored and answered", best["cda"], "ev/s", target, floor=True),
        figure(f"inbound {name}: Bolt answering, nothing stored", best["answering"], "ev/s", note="floor"),
        figure(f"inbound {name}: cda-bot / Bolt", best["cda"] / best["bolt"], "x", 0.25, floor=True),
        figure(f"inbound {name}: cda-bot / Bolt answering", best["cda"] / best["answering"], "x"),
        figure(f"inbound {name}: cda-bot --delivery-process, stored and answered", best["cda2"], "ev/s"),
        figure(f"inbound {name}: cda-bot --workers 2, stored and answered", best["workers"], "ev/s"),
        *(
            [figure(f"inbound {name}: cda-bot, two replicas, stored and answered", best["replicas"], "ev/s")]
            if "replicas" in best
            else []
        ),
        *fixed["cda"].figures(f"inbound {name}:", rate),
        *overload_figures(f"inbound {name}:", over, SLACK_DEADLINE),
        *fixed["cda2"].figures(f"inbound {name}:", rate, ", --delivery-process"),
        *fixed["workers"].figures(f"inbound {name}:", rate, ", --workers 2"),
        figure(f"inbound {name}: acknowledged, all runs", len(acknowledged), "events"),
        figure(f"inbound {name}: acknowledged but not stored", lost, "events", 0),
        figure(f"inbound {name}: acknowledged but not answered", unanswered, "events", 0),
        figure(f"serve {name}: start-up to ready", seen["start_s"], "s"),
        figure(f"serve {name}: resident memory idle", seen["idle_mb"], "MB", 120),
        figure(f"serve {name}: resident memory under load", seen["loaded_mb"], "MB"),
    ]


TWILIO_TOKEN = "bench-twilio-token"
PUBLIC = "https://bot.example.org"
ACCOUNT = "AC" + "0" * 32
NUMBERS = 2000
WHATSAPP_FROM = "whatsapp:+14155238886"  # the bot's number


def number(n: int) -> str:
    return f"whatsapp:+1555{n % NUMBERS:07d}"


def signed_form(n: int) -> tuple[str, bytes]:
    """A WhatsApp message's webhook, signed as Twilio signs it (over the public URL and the form)."""
    sid = f"SM{n:032d}"
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": number(n),
        "To": WHATSAPP_FROM,
        "Body": f"update: bench message {n}",
        "NumMedia": "0",
        "ProfileName": "Bench",
        "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC}/twilio/whatsapp", form)
    body = urlencode(form).encode()
    head = (
        "POST /twilio/whatsapp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return sid, head.encode() + body


def seed_numbers(url: str) -> None:
    seed_cities(
        url,
        NUMBERS,
        "w",
        "America/Sao_Paulo",
        "pt",
        lambda store, n, slug, now: admin.add_member(store, number(n), slug, now),
    )


def whatsapp_env(fake_port: int) -> dict[str, str]:
    """`serve`'s settings for WhatsApp, Twilio's API the fake on `fake_port`, at Twilio's own rate."""
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "PUBLIC_BASE_URL": PUBLIC,
        "PYTHONPATH": str(ROOT),
    }


def whatsapp(
    backend: str, url: str, seconds: float = 8.0, rate: float = 500.0, rounds: int = 2
) -> list[Figure]:
    """WhatsApp inbound on one database, beside a bare endpoint checking Twilio's signature; each round
    also at a fixed offered rate, and the last overloaded."""
    name = label(backend)
    folder = Path(tempfile.mkdtemp(prefix="cda-inbound-wa-"))
    seed_numbers(url)
    fake_port = free_port()
    numbers = iter(range(10**9))
    requests = (signed_form(next(numbers)) for _ in iter(int, 1))
    # Raised, as Twilio does on request: the drain is not measured here (benchmarks/delivery.py does).
    env = {**whatsapp_env(fake_port), "TWILIO_MESSAGES_PER_SECOND": "1000"}
    with process(uvicorn_args("benchmarks.fake_platforms:app", fake_port), fake_port, env, folder):
        run = against_floor(
            url,
            "whatsapp",
            "benchmarks.floors:twilio_app",
            env,
            folder,
            requests,
            seconds=seconds,
            rate=rate,
            rounds=rounds,
            deadline_s=TWILIO_DEADLINE,
            answering=("benchmarks.floors:twilio_answering_app", fake_port, "twilio"),
        )
    return [
        figure(f"inbound WhatsApp {name}: bare Twilio signature check", run.floor, "ev/s", note="floor"),
        figure(f"inbound WhatsApp {name}: answering, nothing stored", run.answering, "ev/s", note="floor"),
        figure(f"inbound WhatsApp {name}: cda-bot, stored and answered", run.cda, "ev/s"),
        figure(f"inbound WhatsApp {name}: cda-bot / bare", run.cda / run.floor, "x"),
        figure(f"inbound WhatsApp {name}: cda-bot / answering", run.cda / run.answering, "x"),
        *run.fixed.figures(f"inbound WhatsApp {name}:", rate),
        *overload_figures(f"inbound WhatsApp {name}:", run.over, TWILIO_DEADLINE),
        *delivery_process_figures(f"inbound WhatsApp {name}:", run, rate),
        figure(f"inbound WhatsApp {name}: acknowledged but not stored", run.lost, "events", 0),
        figure(f"inbound WhatsApp {name}: acknowledged but not answered", run.unanswered, "events", 0),
    ]


def figures() -> list[Figure]:
    """Slack, WhatsApp and Teams inbound on SQLite, and on PostgreSQL where TEST_DATABASE_URL names a
    server."""
    found: list[Figure] = []
    for backend in backends():
        with tempfile.TemporaryDirectory() as folder, fresh_database(backend, Path(folder), "inbound") as db:
            found += slack(backend, db.url.render_as_string(hide_password=False))
        with (
            tempfile.TemporaryDirectory() as folder,
            fresh_database(backend, Path(folder), "inbound_wa") as db,
        ):
            found += whatsapp(backend, db.url.render_as_string(hide_password=False))
        with (
            tempfile.TemporaryDirectory() as folder,
            fresh_database(backend, Path(folder), "inbound_teams") as db,
        ):
            found += teams(backend, db.url.render_as_string(hide_password=False))
    return found


# -- Teams ------------------------------------------------------------------------------------------

TEAMS_APP_ID = "11111111-2222-4333-8444-555555555555"
TEAMS_TENANT = "0f0f0f0f-1111-4222-8333-444444444444"
TEAMS_BOT = {"id": f"28:{TEAMS_APP_ID}", "name": "cda-bot"}
TEAMS_KID = "bench-key-1"


def teams_channel(n: int) -> str:
    return f"19:c{n % CHANNELS:05d}@thread.tacv2"


def seed_teams(url: str) -> None:
    seed_cities(
        url,
        CHANNELS,
        "t",
        "America/Bogota",
        "es",
        lambda store, n, slug, now: admin.bind(store, f"teams:{TEAMS_TENANT}:{teams_channel(n)}", slug, now),
    )


def teams_token(key: rsa.RSAPrivateKey, service_url: str) -> str:
    """A Bot Framework token for our app and this service URL, signed by the key the local JWKS has."""
    now = int(time.time())
    claims = {
        "iss": TEAMS_ISSUER,
        "aud": TEAMS_APP_ID,
        "exp": now + 3600,
        "nbf": now - 60,
        "serviceurl": service_url,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": TEAMS_KID})


def teams_activity(n: int, service_url: str, token: str) -> tuple[str, bytes]:
    """A channel post mentioning the bot, as Teams posts it; with it the id the inbox keeps it under."""
    channel = teams_channel(n)
    activity_id = str(1_700_000_000_000 + n)
    user = f"00000000-0000-4000-8000-{n % 5000:012d}"
    mention = "<at>cda-bot</at>"
    body = json.dumps(
        {
            "type": "message",
            "id": activity_id,
            "timestamp": "2026-11-30T12:00:00.000Z",
            "serviceUrl": service_url,
            "channelId": "msteams",
            "from": {"id": f"29:{user}", "name": "Bench", "aadObjectId": user},
            "conversation": {
                "isGroup": True,
                "conversationType": "channel",
                "id": f"{channel};messageid={activity_id}",
                "tenantId": TEAMS_TENANT,
            },
            "recipient": TEAMS_BOT,
            "textFormat": "plain",
            "text": f"{mention} update: bench event {n}",
            "locale": "es-CO",
            "entities": [{"type": "mention", "text": mention, "mentioned": TEAMS_BOT}],
            "channelData": {
                "tenant": {"id": TEAMS_TENANT},
                "channel": {"id": channel},
                "team": {"id": "19:team@thread.tacv2"},
            },
        }
    ).encode()
    head = (
        "POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return f"{channel}|{activity_id}", head.encode() + body


@dataclass(frozen=True)
class TeamsFakes:
    env: dict[str, str]  # `serve`'s settings for Teams
    service_url: str  # the Bot Connector's, where replies go
    port: int  # of the fake Bot Connector (and the Bot Framework's keys)
    key: rsa.RSAPrivateKey  # signs the Bot Framework's tokens; its public half is published


@contextmanager
def teams_platform(folder: Path, latency_ms: int = 0) -> Iterator[TeamsFakes]:
    """A local Bot Connector with the Bot Framework's OpenID metadata and keys, and a local Entra over
    https (MSAL insists), running while the context lasts; the Connector answers a message after
    `latency_ms`."""
    fake_port, entra_port = free_port(), free_port()
    key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": TEAMS_KID, "use": "sig", "alg": "RS256", "endorsements": ["msteams"]})
    service_url = f"http://127.0.0.1:{fake_port}"
    cert, cert_key = self_signed(folder)
    env = {
        "MICROSOFT_APP_ID": TEAMS_APP_ID,
        "MICROSOFT_APP_PASSWORD": "bench-client-secret-not-real",
        "MICROSOFT_APP_TYPE": "MultiTenant",
        "MICROSOFT_OPENID_METADATA_URL": f"{service_url}/teams/openid",
        "MICROSOFT_AUTHORITY_URL": f"https://127.0.0.1:{entra_port}/botframework.com",
        "REQUESTS_CA_BUNDLE": str(cert),  # MSAL (requests) trusts the local Entra's certificate
        "BENCH_TEAMS_JWK": json.dumps(jwk),
        "PYTHONPATH": str(ROOT),
    }
    fake = uvicorn_args("benchmarks.fake_platforms:app", fake_port)
    entra = uvicorn_args("benchmarks.fake_platforms:app", entra_port)
    entra += ["--ssl-keyfile", str(cert_key), "--ssl-certfile", str(cert)]
    slow = {**env, "BENCH_LATENCY_MS": str(latency_ms)}
    with process(fake, fake_port, slow, folder), process(entra, entra_port, env, folder):
        yield TeamsFakes(env, service_url, fake_port, key)


def teams(backend: str, url: str, seconds: float = 8.0, rate: float = 500.0, rounds: int = 2) -> list[Figure]:
    """Teams inbound on one database: channel posts with a Bot Framework token signed by a local key
    (published by a local OpenID metadata and JWKS), beside a bare endpoint that only checks that
    token; replies go to a local Bot Connector with a token from a local Entra. Each round also at a
    fixed offered rate, and the last overloaded."""
    name = label(backend)
    folder = Path(tempfile.mkdtemp(prefix="cda-inbound-teams-"))
    seed_teams(url)
    with teams_platform(folder) as fakes:
        # One token for every request, as the Bot Framework reuses its tokens until they expire.
        token = teams_token(fakes.key, fakes.service_url)
        numbers = iter(range(10**9))
        requests = (teams_activity(next(numbers), fakes.service_url, token) for _ in iter(int, 1))
        run = against_floor(
            url,
            "teams",
            "benchmarks.floors:teams_app",
            fakes.env,
            folder,
            requests,
            seconds=seconds,
            rate=rate,
            rounds=rounds,
            deadline_s=TEAMS_DEADLINE,
            answering=("benchmarks.floors:teams_answering_app", fakes.port, "teams"),
        )
    target = 1500 if backend == "sqlite" else 1000
    return [
        figure(f"inbound {name}: Teams, bare token check", run.floor, "ev/s", note="floor"),
        figure(f"inbound {name}: Teams, answering, nothing stored", run.answering, "ev/s", note="floor"),
        figure(f"inbound {name}: Teams, stored and answered", run.cda, "ev/s", target, floor=True),
        figure(f"inbound {name}: Teams, cda-bot / bare", run.cda / run.floor, "x"),
        figure(f"inbound {name}: Teams, cda-bot / answering", run.cda / run.answering, "x"),
        *run.fixed.figures(f"inbound {name}: Teams,", rate),
        *overload_figures(f"inbound {name}: Teams,", run.over, TEAMS_DEADLINE),
        *delivery_process_figures(f"inbound {name}: Teams,", run, rate),
        figure(f"inbound {name}: Teams, acknowledged, all runs", len(run.acknowledged), "events"),
        figure(f"inbound {name}: Teams, acknowledged but not stored", run.lost, "events", 0),
        figure(f"inbound {name}: Teams, acknowledged but not answered", run.unanswered, "events", 0),
    ]


if __name__ == "__main__":
    figures()
