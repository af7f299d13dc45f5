"""What the end-to-end tests of every platform share: waiting for the server to be quiet, reading the
platform's outbox rows, slowing (and failing) a message's write, and `serve` refusing a half-configured
platform."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import col, func, select
from typer.testing import CliRunner

from bot.cli import app
from bot.core import inbox
from bot.core.messages import InboundMessage
from bot.runtime import hub
from bot.runtime.serve import Server
from store.models import OutboxMessage
from tests.conftest import TestBot
from tests.slack_harness import wait_until


def settle(server: Server, bot: TestBot, platform: str, timeout: float = 15) -> None:
    """Wait until every acknowledged message is handled and every due message sent (or given up)."""

    def quiet() -> bool:
        if any(server.hub.backlog.values()):
            return False
        with bot.store() as store:
            # A row claimed a moment ago may not be in a lane yet: `sending` counts as not settled.
            sending = select(func.count()).where(
                OutboxMessage.status == "sending", col(OutboxMessage.recipient).startswith(f"{platform}:")
            )
            claimable = store.any_claimable(bot.clock.now(), [platform])
            return not claimable and store.session.exec(sending).one() == 0

    wait_until(quiet, timeout, "messages handled and replies sent")


def lost_write() -> OperationalError:
    """What a write meets when the database goes away while it is under way."""
    return OperationalError("INSERT INTO inbox", None, Exception("server closed the connection unexpectedly"))


def slow_writes(monkeypatch: pytest.MonkeyPatch, seconds: float, fail: Exception | None = None) -> None:
    """Storing a batch of arrivals takes `seconds` once begun, against deadlines shortened to 0.3 s (a
    message not yet being written is withdrawn) and 1.2 s (the last for one being written); with
    `fail`, it then fails with that error, and nothing of the batch is stored."""
    monkeypatch.setattr(hub, "ACCEPT_SECONDS", 0.3)
    monkeypatch.setattr(hub, "DECIDE_SECONDS", 1.2)
    accept_all = inbox.accept_all

    def slow(store: Any, messages: list[InboundMessage], now: Any) -> list[inbox.Accepted]:
        time.sleep(seconds)
        if fail is not None:
            raise fail
        return accept_all(store, messages, now)

    monkeypatch.setattr(inbox, "accept_all", slow)


def outbox_of(bot: TestBot, platform: str) -> list[OutboxMessage]:
    with bot.store() as store:
        query = select(OutboxMessage).where(col(OutboxMessage.recipient).startswith(f"{platform}:"))
        return list(store.session.exec(query.order_by(col(OutboxMessage.id))))


def outbox_row(
    bot: TestBot, platform: str, key: str, done: Callable[[OutboxMessage], bool], timeout: float = 10
) -> OutboxMessage:
    """The outbox row `key` once `done` holds for it (a send was tried and recorded, say)."""
    found: list[OutboxMessage] = []

    def check() -> bool:
        found[:] = [r for r in outbox_of(bot, platform) if r.key == key and done(r)]
        return bool(found)

    wait_until(check, timeout, f"outbox row {key}")
    return found[0]


def serve_refusal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cleared: list[str], env: dict[str, str]
) -> str:
    """`cda-bot serve` with only `env` of the platform's variables set: it must stop before binding the
    port, exit 1 and say why in one line (returned)."""
    monkeypatch.chdir(tmp_path)
    for name in cleared:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--port", "1"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    return str(result.stderr)
