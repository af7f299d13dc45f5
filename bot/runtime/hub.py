"""What an adapter calls once the platform is acknowledged: the dispatcher, off the event loop, and
the deliverer for whatever the message made due (coach notices)."""

import asyncio
import logging

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.core.dispatcher import Dispatcher
from bot.core.messages import Adapter, InboundMessage, Reply
from bot.runtime.delivery import Deliverer, DeliveryReport
from store.repo import open_store

log = logging.getLogger("cda_bot.core")


class Hub:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.dispatcher = Dispatcher(engine, clock)
        self.adapters: dict[str, Adapter] = {}
        # One deliverer for the process, so rate limits hold across messages and scheduler passes.
        self.deliverer = Deliverer(engine, self.adapters, clock)

    def register(self, adapter: Adapter) -> None:
        """An adapter that can deliver unprompted messages to its platform's identities."""
        self.adapters[adapter.platform] = adapter

    async def handle(self, message: InboundMessage) -> list[Reply]:
        # The dispatcher is synchronous and talks to the database: never on the event loop.
        return await asyncio.to_thread(self.dispatcher.handle, message)

    async def is_bound(self, conversation: str) -> bool:
        return await asyncio.to_thread(self._is_bound, conversation)

    def _is_bound(self, conversation: str) -> bool:
        with open_store(self.engine) as store:
            return store.bound_city(conversation) is not None

    async def deliver_due(self) -> DeliveryReport:
        return await self.deliverer.deliver_due()
