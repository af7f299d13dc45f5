"""What the end-to-end tests of every platform share: waiting for the server to be quiet, reading the
platform's outbox rows, and `serve` refusing a half-configured platform."""

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import col, func, select
from typer.testing import CliRunner

from bot.cli import app
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
