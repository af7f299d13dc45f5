"""Past capacity a platform's message is refused at the door with 503 and Retry-After, before its
body is read; other routes and methods pass, and the refusal never reaches the handler."""

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.runtime.intake import RETRY_AFTER_SECONDS
from bot.runtime.shedding import Shedding


def _app(
    full: list[bool],
    limit: int,
    release: asyncio.Event,
    handled: list[str],
    refusals: dict[str, Response] | None = None,
) -> Starlette:
    async def messages(request: Request) -> Response:
        handled.append((await request.body()).decode())
        await release.wait()
        return JSONResponse({"ok": True})

    async def page(_: Request) -> Response:
        return JSONResponse({"page": True})

    return Starlette(
        routes=[Route("/in", messages, methods=["POST"]), Route("/page", page, methods=["GET", "POST"])],
        middleware=[
            Middleware(Shedding, paths=["/in"], full=lambda: full[0], limit=limit, refusals=refusals)
        ],
    )


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_full_backlog_refuses_messages_at_the_door() -> None:
    full, release, handled = [True], asyncio.Event(), []
    release.set()
    async with _client(_app(full, 10, release, handled)) as client:
        refused = await client.post("/in", content=b"m1")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert refused.json() == {"error": "temporarily unavailable"}
        assert handled == []
        # Other routes are not the intake's: they go on.
        assert (await client.post("/page")).status_code == 200
        full[0] = False
        assert (await client.post("/in", content=b"m2")).status_code == 200
        assert handled == ["m2"]


async def test_past_the_requests_in_flight_a_message_is_refused_and_the_next_accepted() -> None:
    full, release, handled = [False], asyncio.Event(), []
    async with _client(_app(full, 2, release, handled)) as client:
        waiting = [asyncio.create_task(client.post("/in", content=f"m{n}".encode())) for n in range(2)]
        while len(handled) < 2:
            await asyncio.sleep(0.01)
        third = await client.post("/in", content=b"m3")
        assert third.status_code == 503
        release.set()
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200, 200]
        assert (await client.post("/in", content=b"m4")).status_code == 200
        assert sorted(handled) == ["m0", "m1", "m4"]


async def test_a_flood_of_refusals_is_one_log_line_not_one_each(caplog: pytest.LogCaptureFixture) -> None:
    full, release, handled = [True], asyncio.Event(), []
    async with _client(_app(full, 10, release, handled)) as client:
        with caplog.at_level(logging.WARNING, logger="cda_bot.shedding"):
            for n in range(20):
                assert (await client.post("/in", content=f"m{n}".encode())).status_code == 503
    [line] = [r for r in caplog.records if r.name == "cda_bot.shedding"]
    assert line.getMessage() == "over capacity, messages refused" and line.path == "/in"  # type: ignore[attr-defined]


async def test_a_path_with_its_own_refusal_is_answered_with_it_past_either_bound() -> None:
    """WhatsApp's: Twilio would not send the message again after a 503, so its sender is told."""
    own = Response("<Response><Message>nothing was saved</Message></Response>", media_type="application/xml")
    full, release, handled = [True], asyncio.Event(), []
    async with _client(_app(full, 1, release, handled, {"/in": own})) as client:
        refused = await client.post("/in", content=b"m1")
        assert (refused.status_code, refused.text) == (200, own.body.decode())
        full[0] = False
        waiting = asyncio.create_task(client.post("/in", content=b"m2"))
        while not handled:
            await asyncio.sleep(0.01)
        second = await client.post("/in", content=b"m3")  # past the one request in flight
        assert second.headers["content-type"].startswith("application/xml") and "<Message>" in second.text
        release.set()
        assert (await waiting).status_code == 200
        assert handled == ["m2"]


async def test_a_request_whose_body_is_still_coming_takes_no_place_in_flight() -> None:
    """Stalled bodies, which anyone can send (the signature is checked once the body is in), never fill
    the bound: the platform's message beside them is taken. Once in, such a body counts."""
    full, release, handled = [False], asyncio.Event(), []
    rest = asyncio.Event()
    release.set()

    async def stalled(n: int) -> AsyncIterator[bytes]:
        yield f"s{n}-".encode()
        await rest.wait()
        yield b"end"

    async with _client(_app(full, 2, release, handled)) as client:
        slow = [asyncio.create_task(client.post("/in", content=stalled(n))) for n in range(3)]
        await asyncio.sleep(0.1)  # all three through the door, their bodies half there
        assert (await client.post("/in", content=b"m1")).status_code == 200
        assert handled == ["m1"]
        release.clear()
        rest.set()
        while len(handled) < 4:
            await asyncio.sleep(0.01)
        assert (await client.post("/in", content=b"m2")).status_code == 503  # three in flight now
        release.set()
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200, 200]
        assert sorted(handled) == ["m1", "s0-end", "s1-end", "s2-end"]
