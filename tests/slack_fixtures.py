"""Fixtures for the Slack tests: the `world`, with a Slack member and coach of Alpha, served for real."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot import admin
from bot.runtime.serve import Server, build_server
from bot.runtime.settings import Settings
from tests.conftest import TestBot
from tests.platform_run import settle
from tests.slack_harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    TEAM,
    MockSlack,
    mock_slack,
    serving,
    signature_headers,
)

MEMBER = f"slack:{TEAM}:UMEMBER1"
COACH = f"slack:{TEAM}:UCOACH1"
CHANNEL = "C0001"  # bound to alpha in `world`


@dataclass
class Running:
    url: str
    server: Server
    mock: MockSlack
    bot: TestBot

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/slack/events",
            content=body,
            headers={"Content-Type": content_type, **signature_headers(body), **(headers or {})},
            timeout=10,
        )

    def event(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return self.post(json.dumps(body).encode(), "application/json", headers)

    def form(self, fields: dict[str, str]) -> httpx.Response:
        return self.post(urlencode(fields).encode(), "application/x-www-form-urlencoded")

    def settle(self, timeout: float = 15) -> None:
        """Wait until every acknowledged message is handled and every due reply sent (or given up)."""
        settle(self.server, self.bot, "slack", timeout)


@pytest.fixture
def slack_world(world: TestBot) -> TestBot:
    with world.store() as store:
        now = world.clock.now()
        admin.add_member(store, MEMBER, "alpha", now, "Sam Slack")
        admin.add_coach(store, COACH, ["alpha"], now, "Cora Coach")
    return world


@pytest.fixture
def mock() -> Iterator[MockSlack]:
    with mock_slack() as running:
        yield running


def slack_settings(mock: MockSlack, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_signing_secret": SIGNING_SECRET,
        "slack_bot_token": BOT_TOKEN,
        "slack_api_base_url": mock.api_url,
        **extra,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def running(slack_world: TestBot, mock: MockSlack) -> Iterator[Running]:
    server = build_server(slack_settings(mock), slack_world.engine, slack_world.clock)
    with serving(server.app) as url:
        yield Running(url, server, mock, slack_world)
