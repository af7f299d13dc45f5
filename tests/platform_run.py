"""What the end-to-end tests of every platform wait on and read: the server quiet, the platform's
outbox rows."""

from collections.abc import Callable

from sqlmodel import col, select

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
            return store.claimable(bot.clock.now(), [platform]) == 0

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
