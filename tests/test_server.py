# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""The server: health and readiness, `cda-bot serve` as a process (adapters on/off, half-configured
refusals, graceful shutdown, logs without secrets), and a signed event answered end to end."""

import asyncio
import gc
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from bot import admin
from bot.core.clock import FixedClock
from bot.core.messages import InboundMessage, Reply
from bot.runtime import logs
from bot.runtime.hub import Hub
from bot.runtime.server import build_app
from store.db import make_engine
from store.models import Update
from store.repo import open_store
from tests.conftest import NOW, TestBot
from tests.listen_queue import listen_queue
from tests.platform_run import serve_refusal
from tests.slack_fixtures import CHANNEL, mock, slack_world  # noqa: F401
from tests.slack_harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SLACK_ENV,
    MockSlack,
    event_body,
    serving,
    signature_headers,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the parent sees why it ended.
GRACEFUL_EXIT = (0, -signal.SIGTERM)


def test_healthz_and_readyz(engine: object) -> None:
    hub = Hub(engine, FixedClock(NOW))  # type: ignore[arg-type]
    with serving(build_app(hub, [])) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{url}/readyz").json() == {
            "status": "ready",
            "backlog": {"inbox": 0, "outbox_in_flight": 0},
        }


def test_a_trailing_slash_leads_to_the_page_on_the_host_the_browser_used(engine: object) -> None:
    """The redirect names no host: one from the Host header would send a browser to whatever the
    request claimed (and to http:// behind a proxy that ended TLS)."""
    hub = Hub(engine, FixedClock(NOW))  # type: ignore[arg-type]
    with (
        serving(build_app(hub, [])) as url,
        httpx.Client(base_url=url, headers={"Host": "elsewhere.example"}) as client,
    ):
        moved = client.get("/healthz/?probe=1")
        assert (moved.status_code, moved.headers["location"]) == (307, "/healthz?probe=1")
        assert client.get(moved.headers["location"]).json() == {"status": "ok"}
        # Not for a write, a path no route has, another site's address, or an encoded slash.
        for method, path in [
            ("POST", "/healthz/"),
            ("GET", "/nowhere/"),
            ("GET", "//elsewhere.example/"),
            ("GET", "/healthz%2F"),
        ]:
            answered = client.request(method, path)
            assert answered.status_code in (404, 405), (method, path)
            assert "location" not in answered.headers, (method, path)


def test_readyz_says_unavailable_when_the_database_is_not_there(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    hub = Hub(engine, FixedClock(NOW))
    with serving(build_app(hub, [])) as url:
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503
        assert response.json()["error"] == "database unreachable"
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_shutdown_handles_and_sends_what_was_accepted(engine: Engine) -> None:
    """A message acknowledged just before the server is told to stop is still answered."""
    import asyncio

    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    with open_store(engine) as store:
        admin.add_city(store, "alpha", "Alpha", "UTC", NOW, None, None, "en")
        admin.add_member(store, "console:ann", "alpha", NOW)
    hub = Hub(engine, FixedClock(NOW))
    sent: list[str] = []

    class Kicker:
        platform = "console"

        def describe(self) -> str:
            return "kick"

        def routes(self) -> list[Route]:
            return [Route("/kick", self.kick, methods=["POST"])]

        async def kick(self, request: Request) -> PlainTextResponse:
            text = (await request.body()).decode()
            message = InboundMessage(
                platform="console",
                message_id=text,
                conversation="console:ann",
                sender="console:ann",
                text=text,
                received_at=NOW,
                reply_context={},
                direct=True,
            )
            await hub.accept(message)
            return PlainTextResponse("ok")

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def send(self, recipient: str, reply: Reply, *args: object) -> None:
            await asyncio.sleep(0.3)  # a slow platform: the send is still under way at shutdown
            sent.append(reply.text)

    with serving(build_app(hub, [Kicker()])) as url:  # type: ignore[list-item]
        assert httpx.post(f"{url}/kick", content="update: shipped before the stop").text == "ok"
    assert len(sent) == 1 and "recorded for Alpha" in sent[0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET is missing"),
        ({"SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID"),
        ({"SLACK_SIGNING_SECRET": "s", "SLACK_CLIENT_ID": "1.2"}, "go together"),
        ({"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxp-user"}, "must be a bot token"),
        (
            {
                "SLACK_SIGNING_SECRET": "s",
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_CLIENT_ID": "1",
                "SLACK_CLIENT_SECRET": "c",
            },
            "not both",
        ),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "SLACK_APP_TOKEN must be"),
    ],
)
def test_serve_refuses_a_half_configured_slack(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stderr = serve_refusal(monkeypatch, tmp_path, SLACK_ENV, env)
    assert message in stderr
    for value in env.values():
        if len(value) > 2:
            assert value not in stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve_process(
    slack_world: TestBot, mock: MockSlack, db_url: str, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in SLACK_ENV and k != "DATABASE_URL"}
    env.update(
        SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_BASE_URL=mock.api_url
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--db", db_url, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return False

    try:
        wait_until(up, 30, "cda-bot serve")
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_serve_answers_a_signed_event_refuses_a_forged_one_and_records_a_retry_once(
    serve_process: tuple[str, subprocess.Popen[str]], mock: MockSlack, slack_world: TestBot
) -> None:
    url, process = serve_process
    event = {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "UMEMBER1",
        "text": "update: from the real server",
        "ts": "9.1",
    }
    body = json.dumps(event_body(event, "EvSERVE")).encode()
    headers = {"Content-Type": "application/json"}
    forged = httpx.post(
        f"{url}/slack/events", content=body, headers={**headers, **signature_headers(body, secret="forged")}
    )
    assert forged.status_code == 401
    for retry in (None, "1", "2"):
        extra = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        response = httpx.post(
            f"{url}/slack/events", content=body, headers={**headers, **signature_headers(body), **extra}
        )
        assert response.status_code == 200
    # On the real clock the scheduler may post too (a reminder of the world's session, a digest).
    wait_until(lambda: bool(mock.replies(CHANNEL)), 10, "the reply")
    [post] = mock.replies(CHANNEL)
    assert post.params["thread_ts"] == "9.1"
    wait_until(lambda: len(mock.named("reactions.add")) == 1, 10, "the reaction")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) in GRACEFUL_EXIT
    assert len(mock.replies(CHANNEL)) == 1
    with slack_world.store() as store:
        assert [u.text for u in store.session.exec(select(Update).where(Update.platform == "slack"))] == [
            "from the real server"
        ]
    log = process.stderr.read() if process.stderr else ""
    assert "slack: on (single workspace, HTTP at POST /slack/events)" in log
    assert BOT_TOKEN not in log and SIGNING_SECRET not in log
    structured = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [e["message"] for e in structured if e["logger"] == "cda_bot.server"] == [
        "server started",
        "server stopped",  # the lifespan ran to its end: a graceful shutdown
    ]


def test_serve_without_credentials_says_slack_is_off(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in SLACK_ENV and k != "DATABASE_URL"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 30, "cda-bot serve")
        assert httpx.post(f"http://127.0.0.1:{port}/slack/events").status_code in (404, 405)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) in GRACEFUL_EXIT
    assert "slack: off (no credentials)" in (process.stderr.read() if process.stderr else "")


def test_logs_are_json_lines_without_secrets() -> None:
    stream = io.StringIO()
    logs.configure(["super-secret-value"], stream=stream)
    try:
        logging.getLogger("cda_bot.test").info(
            "calling with xoxb-123-456-abc and super-secret-value",
            extra={"url": "/slack/oauth_redirect?code=abc&state=xyz"},
        )
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "calling with [redacted] and [redacted]"
    assert entry["url"] == "/slack/oauth_redirect?code=[redacted]&state=[redacted]"
    assert entry["level"] == "info" and entry["logger"] == "cda_bot.test"


def test_serve_sets_what_it_loaded_aside_from_the_cycle_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection over every module and SDK paused the server for about 60 ms every few seconds
    under load; set aside before listening, they are not walked again."""
    from starlette.applications import Starlette

    from bot.runtime import serve

    frozen_when_listening: list[int] = []
    monkeypatch.setattr(logs, "configure", lambda secrets: None)

    class Listening:
        started = True

        def __init__(self, config: object) -> None:
            pass

        def run(self, sockets: object = None) -> None:
            frozen_when_listening.append(gc.get_freeze_count())

    monkeypatch.setattr(serve.uvicorn, "Server", Listening)
    gc.unfreeze()
    try:
        server = serve.Server(app=Starlette(), hub=None, adapters=[], status=[])  # type: ignore[arg-type]
        serve.run(server, "127.0.0.1", 0, [], lambda line: None)
    finally:
        gc.unfreeze()
    assert frozen_when_listening and frozen_when_listening[0] > 10_000


@pytest.mark.skipif(sys.platform != "linux", reason="reads the accept queue through Linux's TCP_INFO")
def test_serve_takes_every_waiting_connection_as_soon_as_its_loop_is_free() -> None:
    """Connections that arrive while the server's loop is busy are all accepted when it is free again,
    where the shedding counts their requests and refuses what is past capacity. uvloop accepted one a
    turn of the loop: under load the rest waited in the kernel's queue, unseen, past the platforms'
    deadlines."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from bot.runtime.serve import uvicorn_config

    listening = socket.create_server(("127.0.0.1", 0), backlog=128)
    busy = threading.Event()

    async def busy_loop(_: Request) -> PlainTextResponse:
        busy.set()
        time.sleep(0.5)  # the loop computes; connections arrive meanwhile
        for _turn in range(3):  # a few turns of the loop
            await asyncio.sleep(0)
        return PlainTextResponse(str(listen_queue(listening)))

    probe = Starlette(routes=[Route("/busy", busy_loop)])
    server = uvicorn.Server(uvicorn_config(probe, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        port = listening.getsockname()[1]
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert busy.wait(10)
        waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        assert listen_queue(listening) == 50  # all of them queued while the loop was busy
        answer = first.makefile("rb")
        head = b"".join(iter(answer.readline, b"\r\n")).lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        assert answer.read(length) == b"0"  # accepted, all of them, within three turns of the loop
        for conn in [first, *waiting]:
            conn.close()
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def _closed_within(conn: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `conn` (what it sent before is read past), or None."""
    started = time.monotonic()
    conn.settimeout(seconds)
    try:
        while conn.recv(65_536):
            pass
    except TimeoutError:
        return None
    return time.monotonic() - started


def test_a_connection_that_does_not_finish_its_headers_in_time_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Silent or trickling, before a first request or between requests: closed at the deadline, where
    uvicorn alone kept it for good. Headers sent in time, a request is answered however long after."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from bot.runtime.header_deadline import HeadersInTime
    from bot.runtime.serve import uvicorn_config

    monkeypatch.setattr(HeadersInTime, "header_seconds", 0.5)

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await request.body()).decode())

    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(Starlette(routes=[Route("/", echo, methods=["POST"])]), "", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    address = listening.getsockname()
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        silent = socket.create_connection(address)
        assert _closed_within(silent, 5) is not None
        trickling = socket.create_connection(address)
        started = time.monotonic()
        with pytest.raises(OSError):  # the server closed it: a broken pipe or a reset
            for byte in request[:40]:  # a byte every 0.1 s: never quiet, never done
                trickling.sendall(bytes([byte]))
                time.sleep(0.1)
        assert time.monotonic() - started < 3
        # Headers in time, then a pause past the deadline before the body: answered.
        patient = socket.create_connection(address)
        patient.sendall(request[:-2])
        time.sleep(1)
        patient.sendall(request[-2:])
        patient.settimeout(5)
        answer = b""
        while not answer.endswith(b"\r\n\r\nhi"):
            answer += patient.recv(65_536) or pytest.fail(f"closed after {answer!r}")
        assert answer.startswith(b"HTTP/1.1 200")
        # The next request on the same connection has a deadline of its own.
        patient.sendall(request[:10])
        assert _closed_within(patient, 5) is not None
        for conn in (silent, trickling, patient):
            conn.close()
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()
