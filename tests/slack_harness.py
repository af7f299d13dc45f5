"""A local stand-in for the Slack Web API, signed requests as Slack sends them, and the real ASGI app
under a real uvicorn server on 127.0.0.1. Nothing here reaches the internet."""

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import uvicorn
from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1111-2222-testtoken"
TEAM = "T0001"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
# What a test server process must not inherit from the environment of whoever runs the tests.
SLACK_ENV = [
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_API_BASE_URL",
    "SLACK_TOKEN_ENCRYPTION_KEY",
]


def listening_socket() -> socket.socket:
    """A socket on a free port of 127.0.0.1 (its address: `getsockname()`), for `serving`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(
    app: Any,
    graceful_seconds: float = 10,
    tls: tuple[Path, Path] | None = None,
    sock: socket.socket | None = None,
) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread (over https with `tls`: cert, key); yields its base URL
    once it has started. `sock`: one from `listening_socket`, for an app that must know its own address
    before it starts."""
    sock = sock or listening_socket()
    port = sock.getsockname()[1]
    https = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls is not None else {}
    config = uvicorn.Config(
        app,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=graceful_seconds,
        access_log=False,
        **https,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    body: bytes = b""


@dataclass
class MockSlack:
    """Records every Web API call; can answer 429 (`Retry-After: 1`) or be slow, per method."""

    calls: list[Call] = field(default_factory=list)
    rate_limit: dict[str, int] = field(default_factory=dict)  # method → how many 429s to answer first
    delay: dict[str, float] = field(default_factory=dict)  # method → seconds before answering
    expired: set[str] = field(default_factory=set)  # response URL keys answered 404, as Slack does late
    base_url: str = ""
    socket_url: str = ""  # what `apps.connections.open` gives (Socket Mode)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["POST", "GET"]),
                Route("/response/{key}", self._response_url, methods=["POST"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
            ]
        )

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def named(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.named(method)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} {method} call(s), got {self.named(method)}")

    def replies(self, channel: str) -> list[Call]:
        """The posts to `channel` in a message's thread: the answers to messages. A server on the real
        clock also posts what its scheduler finds due, which answer nothing (a session's reminders to
        the channel, a coach's Monday digest to the coach)."""
        return [
            c
            for c in self.named("chat.postMessage")
            if c.params.get("channel") == channel and c.params.get("thread_ts")
        ]

    async def _record(self, method: str, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            params = json.loads(raw or b"{}")
        else:
            params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            for key in ("blocks", "payload"):
                if isinstance(params.get(key), str):
                    params[key] = json.loads(params[key])
        params.update(dict(request.query_params))
        with self.lock:
            self.calls.append(Call(method, params, dict(request.headers), time.monotonic(), raw))
        return params

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        params = await self._record(method, request)
        if self.delay.get(method):
            await asyncio.sleep(self.delay[method])
        with self.lock:
            limited = self.rate_limit.get(method, 0)
            if limited:
                self.rate_limit[method] = limited - 1
        if limited:
            return JSONResponse(
                {"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "1"}
            )
        return JSONResponse(self._answer(method, params))

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "team_id": TEAM,
                "team": "Test",
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "url": "https://test.invalid/",
            }
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        if method == "chat.postMessage":
            return {"ok": True, "channel": params.get("channel"), "ts": f"{time.time():.6f}"}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D0DIRECT"}}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "upload_url": f"{self.base_url}/upload/F0001", "file_id": "F0001"}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": "F0001", "title": params.get("files")}]}
        if method == "oauth.v2.access":
            return {
                "ok": True,
                "app_id": "A0001",
                "authed_user": {"id": "UINSTALLER"},
                "scope": "chat:write",
                "token_type": "bot",
                "access_token": "xoxb-installed-token",
                "bot_user_id": "UBOT0002",
                "team": {"id": "T0002", "name": "Other"},
                "enterprise": None,
                "is_enterprise_install": False,
            }
        return {"ok": True}

    async def _response_url(self, request: Request) -> Response:
        await self._record("response_url", request)
        if request.path_params["key"] in self.expired:
            return PlainTextResponse("expired_url", status_code=404)
        return PlainTextResponse("ok")

    async def _upload(self, request: Request) -> Response:
        await self._record("upload", request)
        return PlainTextResponse("OK - 42")


@contextmanager
def mock_slack() -> Iterator[MockSlack]:
    mock = MockSlack()
    with serving(mock.app()) as url:
        mock.base_url = url
        yield mock


def signature_headers(
    body: bytes, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """`v0=` HMAC-SHA256 of `v0:<timestamp>:<raw body>`, as Slack signs every request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_body(event: dict[str, Any], event_id: str, team: str = TEAM) -> dict[str, Any]:
    return {
        "token": "unused",
        "team_id": team,
        "api_app_id": "A0001",
        "event": {"event_ts": event.get("ts", "1.0"), **event},
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": BOT_USER, "is_bot": True}],
    }


def wait_until(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class SocketLink:
    """Slack's end of a Socket Mode connection, on 127.0.0.1 (aiohttp's WebSocket server, in a thread
    with its own loop): says hello to whoever connects, sends envelopes as Slack does, and records every
    envelope id acknowledged."""

    def __init__(self) -> None:
        self.acks: list[str] = []
        self.connections = 0
        self._socket: web.WebSocketResponse | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Socket Mode fake did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/link"
        self._ready.set()
        self._loop.run_forever()

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.connections += 1
        self._socket = socket
        await socket.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}})
        async for frame in socket:
            if frame.type == aiohttp.WSMsgType.TEXT:
                envelope_id = json.loads(frame.data).get("envelope_id")
                if envelope_id:
                    self.acks.append(envelope_id)
        return socket

    def connected(self) -> bool:
        return self._socket is not None and not self._socket.closed

    def send(self, envelope: dict[str, Any]) -> None:
        assert self._socket is not None, "nobody connected"
        asyncio.run_coroutine_threadsafe(self._socket.send_json(envelope), self._loop).result(5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def events_envelope(body: dict[str, Any], envelope_id: str, retry_attempt: int = 0) -> dict[str, Any]:
    """An Events API payload as Socket Mode carries it."""
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": retry_attempt,
        "retry_reason": "timeout" if retry_attempt else "",
        "payload": body,
    }
