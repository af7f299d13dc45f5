# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""Slack over Socket Mode: the real server connects with slack_bolt's handler (slack_sdk's aiohttp
client) to a local stand-in of Slack's WebSocket, which sends envelopes as Slack does. An envelope is
acknowledged only once its message is stored; one that could not be stored is left unacknowledged, so
Slack sends it again; a retry is answered once."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlmodel import select

from bot.runtime.serve import Server, build_server
from bot.runtime.settings import Settings
from store.models import InboxMessage, Update
from tests.conftest import TestBot
from tests.platform_run import settle
from tests.slack_fixtures import CHANNEL, mock, slack_world  # noqa: F401
from tests.slack_harness import (
    BOT_TOKEN,
    MockSlack,
    SocketLink,
    event_body,
    events_envelope,
    serving,
    wait_until,
)

APP_TOKEN = "xapp-1-A0001-1-sockettest"


@dataclass
class Connected:
    server: Server
    mock: MockSlack
    link: SocketLink
    bot: TestBot

    def stored(self, event_id: str) -> bool:
        with self.bot.store() as store:
            query = select(InboxMessage).where(
                InboxMessage.platform == "slack", InboxMessage.message_id == event_id
            )
            return store.session.exec(query).first() is not None

    def updates(self) -> list[str]:
        with self.bot.store() as store:
            return [u.text for u in store.session.exec(select(Update).where(Update.platform == "slack"))]


@pytest.fixture
def connected(slack_world: TestBot, mock: MockSlack) -> Iterator[Connected]:
    link = SocketLink()
    mock.socket_url = link.url
    # No signing secret: in Socket Mode nothing comes over HTTP, and the app token is what Slack asks for.
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_base_url=mock.api_url
    )
    server = build_server(settings, slack_world.engine, slack_world.clock)
    try:
        with serving(server.app):
            wait_until(link.connected, what="the server to connect over Socket Mode")
            yield Connected(server, mock, link, slack_world)
    finally:
        link.close()


def _said(text: str, event_id: str) -> dict:
    message = {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "UMEMBER1",
        "text": text,
        "ts": "1700000000.000300",
    }
    return event_body(message, event_id)


def test_the_connection_is_opened_with_the_app_token(connected: Connected) -> None:
    [opened] = connected.mock.named("apps.connections.open")
    assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"
    assert connected.link.connections == 1


def test_a_message_is_stored_then_acknowledged_then_answered_once_whatever_the_retries(
    connected: Connected,
) -> None:
    link = connected.link
    link.send(events_envelope(_said("update: sent over the socket", "EvSock1"), "env-1"))
    wait_until(lambda: "env-1" in link.acks, what="the envelope's acknowledgement")
    assert connected.stored("EvSock1")
    [post] = connected.mock.wait_for("chat.postMessage")
    assert post.params["channel"] == CHANNEL and post.params["thread_ts"] == "1700000000.000300"
    assert "recorded for Alpha" in post.params["text"]
    # Slack sends an envelope again when it thinks the first went unanswered: a new envelope, the same event.
    link.send(events_envelope(_said("update: sent over the socket", "EvSock1"), "env-2", retry_attempt=1))
    wait_until(lambda: "env-2" in link.acks, what="the retry's acknowledgement")
    settle(connected.server, connected.bot, "slack")
    assert len(connected.mock.named("chat.postMessage")) == 1
    assert connected.updates() == ["sent over the socket"]


def test_what_could_not_be_stored_is_left_unacknowledged_for_slack_to_send_again(
    connected: Connected, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    link = connected.link
    monkeypatch.setattr("bot.runtime.intake.MAX_BACKLOG", 0)  # full: nothing more is taken in
    with caplog.at_level(logging.INFO, logger="cda_bot.slack.bolt"):
        link.send(events_envelope(_said("update: while full", "EvSock2"), "env-3"))
        wait_until(
            lambda: any(
                "Unsuccessful Bolt execution result (status: 503" in r.getMessage() for r in caplog.records
            ),
            what="the refusal",
        )
    assert "env-3" not in link.acks and not connected.stored("EvSock2")
    assert connected.mock.named("chat.postMessage") == []
    monkeypatch.setattr("bot.runtime.intake.MAX_BACKLOG", 500)
    link.send(events_envelope(_said("update: while full", "EvSock2"), "env-4", retry_attempt=1))
    wait_until(lambda: "env-4" in link.acks, what="the retry's acknowledgement")
    settle(connected.server, connected.bot, "slack")
    assert connected.updates() == ["while full"] and "env-3" not in link.acks
    assert len(connected.mock.named("chat.postMessage")) == 1
