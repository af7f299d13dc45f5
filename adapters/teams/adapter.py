"""Microsoft Teams on the common message path: `POST /api/messages` lets in what the Bot Framework
signed (see `auth`), turns a message into an inbound message and answers 200 once the hub has stored
it (when it could not be, the person is told so at once, straight through the Bot Connector, or
Teams gets a 503 with Retry-After). Installing the bot stores the conversation's reference
and queues a greeting; removing it marks the reference gone. Replies and unprompted messages come back
through `send`, as Adaptive Cards or text, posted with the bot's Entra token."""

import asyncio
import logging
from functools import partial
from typing import Any

from microsoft_agents.activity import Activity
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.teams import parse, render
from adapters.teams.auth import (
    KeySet,
    Refused,
    TokenGate,
    Verified,
    check_local_client,
    check_local_service,
    is_loopback_url,
)
from adapters.teams.config import ROUTE, TeamsConfig
from adapters.teams.connector import Connector
from adapters.teams.parse import PLATFORM, Lifecycle
from adapters.teams.tokens import BotTokens
from bot.core import conversations
from bot.core.messages import DeliveryError, InboundMessage, Reply, not_saved
from bot.runtime.http_input import body_or_refusal
from bot.runtime.hub import Hub, Overloaded, Unavailable, Undecided, Write
from handlers.welcome import welcome

log = logging.getLogger("cda_bot.teams")

MAX_BODY_BYTES = 1_000_000  # Teams' own activities stay far below this
BODY_TIMEOUT_SECONDS = 10.0  # Teams waits 15 s for its answer
TELL_SECONDS = 5.0  # for telling a person their message was not saved, within those 15 s


def refusal(status: int, error: str, retry_after: int | None = None) -> JSONResponse:
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse({"error": error[:200]}, status_code=status, headers=headers)


def accepted() -> Response:
    return Response(status_code=200)


class TeamsAdapter:
    platform = PLATFORM
    intake_paths = (ROUTE,)  # refused at the door past capacity

    def __init__(self, config: TeamsConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.keys: KeySet | None = None
        self.gate: TokenGate | None = None
        tokens: BotTokens | None = None
        if config.app_id is not None:
            self.keys = KeySet(config.openid_metadata_url)
            self.gate = TokenGate(config.app_id, self.keys)
            assert config.app_password is not None
            tokens = BotTokens(config.app_id, config.app_password, config.authority_url)
        self.connector = Connector(tokens)

    def describe(self) -> str:
        return self.config.describe()

    def routes(self) -> list[BaseRoute]:
        return [Route(ROUTE, self._messages, methods=["POST"])]

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.keys is not None:
            await self.keys.prefetch()  # a failure is logged; the first request tries again

    async def stop(self) -> None:
        if self.keys is not None:
            await self.keys.close()
        await self.connector.close()

    # -- in ---------------------------------------------------------------------------------------------
    async def _messages(self, request: Request) -> Response:
        try:
            verified = await self._caller(request)
            body = await body_or_refusal(request, MAX_BODY_BYTES, BODY_TIMEOUT_SECONDS, log)
            if isinstance(body, Response):
                return body
            activity = parse.read_activity(body)
            if verified is not None:
                # The base channel (`msteams` of `msteams:…`) is what keys are endorsed for.
                channel = str(activity.channel_id or "").split(":", 1)[0]
                TokenGate.check_activity(verified, activity.service_url, channel)
            else:
                check_local_service(activity.service_url)
            return await self._handle(activity)
        except Refused as refused:
            log.warning("teams request refused", extra={"status": refused.status, "reason": refused.error})
            return refusal(refused.status, refused.error, refused.retry_after)
        except parse.PayloadError as error:
            log.warning("teams payload refused", extra={"reason": str(error)[:200]})
            return refusal(400, str(error))
        except ValidationError as error:
            # A shape the parser did not foresee still fails on the SDK's models: the body's fault.
            log.warning("teams payload refused", extra={"reason": f"unreadable activity: {error.title}"})
            return refusal(400, "unreadable activity")
        except Unavailable as unavailable:
            return refusal(503, "temporarily unavailable", unavailable.retry_after)

    async def _caller(self, request: Request) -> Verified | None:
        """The verified token; None in local development, where only this machine may post."""
        if self.gate is not None:
            return await self.gate.verify(request.headers)
        check_local_client(request.client.host if request.client else None, request.headers)
        return None

    async def _handle(self, activity: Activity) -> Response:
        local = self.config.local
        if activity.type == "message":
            message = parse.from_message(activity, self.hub.clock.now(), local)
            if message is None:
                return accepted()
            try:
                await self.hub.accept(message)
            except (Undecided, Overloaded):
                # It may yet be stored (a retry of it is then dropped), or the server has too much to
                # do to tell anyone: 503, and Teams sends it again.
                raise
            except Unavailable:
                # Teams sends a failed activity again at most a couple of times, soon after (no more is
                # documented), which an outage outlasts: whoever spoke to the bot is told now, as on the
                # other platforms, and Teams gets 200. Chatter is not answered; it gets the 503.
                if message.addressed and await self._tell_not_saved(message, activity.locale):
                    return accepted()
                raise
            return accepted()
        event = parse.lifecycle(activity, local)
        if event is not None:
            await self.hub.record(self._installed(event) if event.installed else self._removed(event))
        # Typing, reactions, invokes the bot does not use: acknowledged, nothing stored.
        return accepted()

    async def _tell_not_saved(self, message: InboundMessage, locale: str | None) -> bool:
        """Say nothing was saved where the answer would have gone, straight through the Bot Connector
        (the database is what failed), in the language Teams says the person uses; False if that
        failed too."""
        try:
            async with asyncio.timeout(TELL_SECONDS):
                reply = Reply(text=not_saved(locale))
                await self.send(message.conversation, reply, message.reference, message.reply_context)
        except Exception as error:
            log.warning("teams sender not told nothing was saved", extra={"error": type(error).__name__})
            return False
        log.info("teams sender told nothing was saved")
        return True

    def _installed(self, event: Lifecycle) -> Write:
        greeting = welcome(event.conversation, event.person, event.locale) if event.greet else None
        log.info("teams installed", extra={"conversation": event.conversation, "channel": event.channel})
        return partial(
            conversations.installed,
            platform=PLATFORM,
            conversation=event.conversation,
            person=event.person,
            reference=event.reference,
            greeting=greeting,
            event_id=event.activity_id,
        )

    def _removed(self, event: Lifecycle) -> Write:
        log.info("teams removed", extra={"conversation": event.conversation})
        return partial(
            conversations.removed,
            platform=PLATFORM,
            keys=[k for k in (event.conversation, event.person) if k is not None],
            reference=event.reference,
            reason="the bot was removed from this conversation",
        )

    # -- out --------------------------------------------------------------------------------------------
    def limit_key(
        self, recipient: str, reference: dict[str, Any] | None, context: dict[str, Any] | None = None
    ) -> str:
        """What Teams counts its limits against: the conversation a send lands in. A personal chat is
        written to as the person (reminders, notices) and as the chat (answers): one limit for both."""
        found = (context or {}).get("reference") or reference
        return parse.landing(recipient, found if isinstance(found, dict) else None)

    async def send(
        self,
        recipient: str,
        reply: Reply,
        reference: dict[str, Any] | None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Post `reply` to `recipient`: within `context` when it answers a message (a channel post's
        thread, a chat), else to the stored reference (a channel, a chat, a person's personal chat)."""
        found = (context or {}).get("reference") or reference
        reply_to = (context or {}).get("replyToId") if context else None
        if not isinstance(found, dict):
            raise DeliveryError(
                f"teams: no conversation with {recipient} yet (they message the bot or install the app first)"
            )
        gone = conversations.gone_reason(found)
        if gone is not None:
            raise DeliveryError(f"teams: {gone}", permanent=True)
        service_url = found.get("serviceUrl")
        conversation = found.get("conversation") if isinstance(found.get("conversation"), dict) else {}
        bot = found.get("bot") if isinstance(found.get("bot"), dict) else None
        if not isinstance(service_url, str) or not service_url or bot is None:
            raise DeliveryError("teams: the stored reference has no serviceUrl or bot", permanent=True)
        if self.config.local and not is_loopback_url(service_url):
            raise DeliveryError("teams: without MICROSOFT_APP_ID only loopback services are sent to")
        conversation_id = conversation.get("id")
        if not conversation_id:
            conversation_id = await self._open_personal(recipient, found, service_url, bot, conversation)
        activity = render.activity(reply)
        activity.update(
            {
                "from": bot,
                "conversation": {"id": conversation_id},
                "channelId": found.get("channelId") or "msteams",
            }
        )
        if reply_to:
            activity["replyToId"] = reply_to
        await self.connector.post(service_url, conversation_id, activity, reply_to)

    async def _open_personal(
        self,
        recipient: str,
        found: dict[str, Any],
        service_url: str,
        bot: dict[str, Any],
        conversation: dict[str, Any],
    ) -> str:
        """A person known only from a channel: open (or find) their personal chat, and keep it."""
        user = found.get("user") if isinstance(found.get("user"), dict) else None
        tenant = conversation.get("tenantId")
        if user is None or not user.get("id") or not tenant:
            raise DeliveryError("teams: the stored reference names no person to write to", permanent=True)
        opened = await self.connector.create_personal(service_url, bot, user, tenant)
        personal = {
            **found,
            "conversation": {"id": opened, "conversationType": "personal", "tenantId": tenant},
        }
        try:
            await self.hub.record(
                partial(conversations.remember, platform=PLATFORM, key=recipient, reference=personal)
            )
        except Unavailable:  # the next send opens it again: Teams gives the same chat
            log.warning("teams personal chat not stored")
        return opened
