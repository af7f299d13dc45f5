"""The Bot Connector client: one per service URL for as long as the bot's token lasts (making one costs
more than a call), a new one with each new token, and the old one closed only once its calls are over."""

import asyncio
import threading
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.teams import connector as connector_module
from adapters.teams.connector import Connector
from tests.slack_harness import serving


class Tokens:
    """Stands in for the bot's Entra tokens: whatever token is current."""

    def __init__(self) -> None:
        self.current = "bot-token-1"

    async def token(self) -> str:
        return self.current

    def forget(self) -> None:
        pass

    def close(self) -> None:
        pass


class Connectors:
    """A Bot Connector that records the bearer token of each post; posts to `slow` wait for `release`."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.arrived = threading.Event()
        self.release = threading.Event()

    def app(self) -> Starlette:
        async def post(request: Request) -> Response:
            conversation = request.path_params["conversation"]
            self.tokens[conversation] = request.headers.get("authorization", "")
            if conversation == "slow":
                self.arrived.set()
                await asyncio.to_thread(self.release.wait, 10)
            return JSONResponse({"id": f"sent-{conversation}"}, status_code=201)

        route = Route("/v3/conversations/{conversation}/activities", post, methods=["POST"])
        return Starlette(routes=[route])


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ConnectorClient the connector makes."""
    made: list[Any] = []
    real = connector_module.ConnectorClient

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(connector_module, "ConnectorClient", counted)
    return made


ACTIVITY = {"type": "message", "text": "hello"}


def test_calls_share_one_client_until_the_token_is_renewed(made: list[Any]) -> None:
    fake, tokens = Connectors(), Tokens()

    async def scenario(url: str) -> None:
        connector = Connector(tokens)  # type: ignore[arg-type]
        try:
            assert [await connector.post(url, f"c{n}", ACTIVITY, None) for n in range(3)] == [
                "sent-c0",
                "sent-c1",
                "sent-c2",
            ]
            assert len(made) == 1
            tokens.current = "bot-token-2"
            assert await connector.post(url, "c3", ACTIVITY, None) == "sent-c3"
            assert len(made) == 2
            assert made[0].client.closed and not made[1].client.closed
        finally:
            await connector.close()
        assert made[1].client.closed

    with serving(fake.app()) as url:
        asyncio.run(scenario(url))
    assert fake.tokens == {
        "c0": "Bearer bot-token-1",
        "c1": "Bearer bot-token-1",
        "c2": "Bearer bot-token-1",
        "c3": "Bearer bot-token-2",
    }


def test_a_call_under_way_when_the_token_is_renewed_ends_on_its_own_client(made: list[Any]) -> None:
    fake, tokens = Connectors(), Tokens()

    async def scenario(url: str) -> None:
        connector = Connector(tokens)  # type: ignore[arg-type]
        try:
            slow = asyncio.create_task(connector.post(url, "slow", ACTIVITY, None))
            await asyncio.to_thread(fake.arrived.wait, 10)
            tokens.current = "bot-token-2"
            assert await connector.post(url, "fast", ACTIVITY, None) == "sent-fast"
            assert not made[0].client.closed  # the slow call still uses it
            fake.release.set()
            assert await slow == "sent-slow"
            assert made[0].client.closed  # closed once that call was over
        finally:
            fake.release.set()
            await connector.close()

    with serving(fake.app()) as url:
        asyncio.run(scenario(url))
    assert fake.tokens == {"slow": "Bearer bot-token-1", "fast": "Bearer bot-token-2"}
