"""Slack through Bolt's `AsyncApp`: acknowledge first, then hand the message to the core and post the
replies (in the thread, as Block Kit), react ✅ to recorded updates, and deliver coach notices."""

import logging
import re
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.slack import parse, render
from adapters.slack.client import web_client
from adapters.slack.config import SlackConfig, SlackConfigError
from adapters.slack.gate import Gate
from adapters.slack.oauth_stores import InstallationStore, StateStore
from adapters.slack.parse import PLATFORM, RESOLVE_ACTION, Incoming, ReplyTarget
from bot.core.messages import UPDATE_RECORDED, Attachment, DeliveryError, Reply
from bot.runtime.background import BackgroundWork
from bot.runtime.hub import Hub

log = logging.getLogger("cda_bot.slack")

BOT_SCOPES = [
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "commands",
    "files:write",
    "groups:history",
    "im:history",
    "im:write",
    "mpim:history",
    "reactions:write",
]
SLASH_COMMAND = "/cda"
UPDATE_REACTION = "white_check_mark"
# Errors that another attempt cannot fix: the outbox stops retrying these.
PERMANENT_ERRORS = frozenset(
    {
        "account_inactive",
        "channel_not_found",
        "invalid_auth",
        "is_archived",
        "not_authed",
        "not_in_channel",
        "token_revoked",
        "user_not_found",
    }
)


class _Authorize(AsyncAuthorize):
    """Answers from what is already known (start-up `auth.test`, or the stored installation), so the
    acknowledgement never waits for a Web API call."""

    def __init__(self, adapter: "SlackAdapter") -> None:
        self.adapter = adapter

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        **_: Any,
    ) -> AuthorizeResult | None:
        return await self.adapter.authorization(enterprise_id, team_id)


class SlackAdapter:
    platform = PLATFORM

    def __init__(self, config: SlackConfig, core: Hub, work: BackgroundWork) -> None:
        self.config = config
        self.core = core
        self.work = work
        self.client = web_client(config.api_base_url)
        self.installations = (
            InstallationStore(config.client_id, core.engine) if config.client_id is not None else None
        )
        self._single: AuthorizeResult | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self.app = AsyncApp(
            name="cda-bot",
            client=self.client,
            signing_secret=config.signing_secret or "",
            request_verification_enabled=config.signing_secret is not None,
            authorize=_Authorize(self),
            oauth_settings=self._oauth_settings(),
            process_before_response=False,
            logger=logging.getLogger("cda_bot.slack.bolt"),
        )
        self._listen()
        self.handler = AsyncSlackRequestHandler(self.app)
        self.gate = Gate(config.signing_secret) if config.signing_secret is not None else None

    def describe(self) -> str:
        return self.config.describe()

    # -- configuration ----------------------------------------------------------------------------
    def _oauth_settings(self) -> AsyncOAuthSettings | None:
        if self.installations is None:
            return None
        base = (self.config.public_base_url or "").rstrip("/")
        return AsyncOAuthSettings(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            scopes=BOT_SCOPES,
            user_scopes=[],
            redirect_uri=f"{base}/slack/oauth_redirect" if base else None,
            install_path="/slack/install",
            redirect_uri_path="/slack/oauth_redirect",
            installation_store=self.installations,
            state_store=StateStore(self.core.engine),
        )

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        if self.gate is not None:
            routes.append(Route("/slack/events", self._events, methods=["POST"]))
        if self.installations is not None:
            routes.append(Route("/slack/install", self.handler.handle, methods=["GET"]))
            routes.append(Route("/slack/oauth_redirect", self.handler.handle, methods=["GET"]))
        return routes

    async def _events(self, request: Request) -> Response:
        assert self.gate is not None
        body = await request.body()
        refused = self.gate.check(body, request.headers)
        if refused is not None:
            log.warning(
                "slack request refused",
                extra={"status": refused.status_code, "retry": request.headers.get("x-slack-retry-num")},
            )
            return refused
        return await self.handler.handle(request)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.config.bot_token is not None:
            await self._learn_identity()
        if self.config.app_token is not None:
            self._socket = AsyncSocketModeHandler(self.app, self.config.app_token)
            await self._socket.connect_async()

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()

    async def _learn_identity(self) -> None:
        try:
            found = await self.client.auth_test(token=self.config.bot_token)
        except SlackApiError as error:
            if error.response.get("error") in ("invalid_auth", "not_authed", "account_inactive"):
                raise SlackConfigError(
                    f"slack: SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')})"
                ) from None
            log.warning("slack auth.test failed at start; will retry on the first request")
            return
        except (aiohttp.ClientError, TimeoutError):
            log.warning("slack unreachable at start; will retry on the first request")
            return
        self._single = AuthorizeResult(
            enterprise_id=found.get("enterprise_id"),
            team_id=found.get("team_id"),
            team=found.get("team"),
            url=found.get("url"),
            bot_user_id=found.get("user_id"),
            bot_id=found.get("bot_id"),
            bot_token=self.config.bot_token,
        )
        log.info("slack workspace", extra={"team_id": found.get("team_id"), "bot_user": found.get("user_id")})

    async def authorization(self, enterprise_id: str | None, team_id: str | None) -> AuthorizeResult | None:
        if self.config.bot_token is not None:
            if self._single is None:
                await self._learn_identity()
            return self._single
        assert self.installations is not None
        installation = await self.installations.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id
        )
        if installation is None or installation.bot_token is None:
            return None
        return AuthorizeResult(
            enterprise_id=installation.enterprise_id,
            team_id=installation.team_id,
            team=installation.team_name,
            bot_user_id=installation.bot_user_id,
            bot_id=installation.bot_id,
            bot_token=installation.bot_token,
            bot_scopes=installation.bot_scopes,
        )

    async def _token_for(self, team_id: str) -> str | None:
        found = await self.authorization(None, team_id)
        return found.bot_token if found is not None else None

    # -- listeners: acknowledge, then work in the background --------------------------------------
    def _listen(self) -> None:
        app = self.app

        @app.event("message")
        @app.event("app_mention")
        async def on_event(body: dict[str, Any], context: AsyncBoltContext) -> None:
            # Events are acknowledged by Bolt before this runs.
            self.work.spawn(self._on_event(body, context.bot_user_id, context.bot_token), "slack-event")

        @app.command(SLASH_COMMAND)
        async def on_command(
            ack: Any, body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
        ) -> None:
            await ack()
            self.work.spawn(self._on_command(body, respond, context.bot_token), "slack-command")

        @app.action(re.compile(f"^{RESOLVE_ACTION}"))
        async def on_action(
            ack: Any, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
        ) -> None:
            await ack()
            self.work.spawn(self._on_action(body, action, context.bot_token), "slack-action")

        if self.installations is not None:
            app.enable_token_revocation_listeners()

        @app.event(re.compile(".*"))
        async def on_other_event() -> None:
            """Acknowledged and ignored: a 404 would make Slack retry it."""

    async def _on_event(self, body: dict[str, Any], bot_user_id: str | None, token: str | None) -> None:
        incoming = parse.from_event(body, bot_user_id, self.core.clock.now())
        if incoming is None or token is None:
            return
        if incoming.ambient and not await self.core.is_bound(incoming.message.conversation):
            return  # chatter in a channel no city is bound to is none of the bot's business
        await self._answer(incoming, token)

    async def _on_action(self, body: dict[str, Any], action: dict[str, Any], token: str | None) -> None:
        try:
            incoming = parse.from_action(body, action, self.core.clock.now())
        except parse.PayloadError as error:
            log.warning("slack action ignored", extra={"reason": str(error)})
            return
        if token is not None:
            await self._answer(incoming, token)

    async def _answer(self, incoming: Incoming, token: str) -> None:
        replies = await self.core.handle(incoming.message)
        client = web_client(self.config.api_base_url, token)
        for reply in replies:
            await self._post(client, incoming.target, reply)
        await self._deliver()

    async def _on_command(self, body: dict[str, Any], respond: AsyncRespond, token: str | None) -> None:
        try:
            message = parse.from_command(body, self.core.clock.now())
        except parse.PayloadError as error:
            log.warning("slack command ignored", extra={"reason": str(error)})
            return
        replies = await self.core.handle(message)
        for reply in replies:
            # Only the person who typed the command sees the answer: a coach's view of several
            # cities must not land in one city's channel.
            try:
                await respond(
                    text=render.fallback_text(reply),
                    blocks=render.render_blocks(reply),
                    response_type="ephemeral",
                    replace_original=False,
                )
            except Exception:
                log.exception("slack command reply failed", extra={"message_id": message.message_id})
            if reply.attachment is not None and not render.inline_csv(reply.attachment) and token:
                client = web_client(self.config.api_base_url, token)
                await self._upload_to_user(client, body["user_id"], reply.attachment)
        await self._deliver()

    async def _deliver(self) -> None:
        try:
            await self.core.deliver_due()
        except Exception:
            log.exception("delivering due messages failed")

    # -- out ------------------------------------------------------------------------------------------
    async def _post(self, client: AsyncWebClient, target: ReplyTarget, reply: Reply) -> None:
        try:
            await client.chat_postMessage(
                channel=target.channel,
                thread_ts=target.thread_ts,
                text=render.fallback_text(reply),
                blocks=render.render_blocks(reply),
            )
            if reply.attachment is not None and not render.inline_csv(reply.attachment):
                await self._upload(client, target.channel, target.thread_ts, reply.attachment)
            if reply.kind == UPDATE_RECORDED and target.message_ts is not None:
                await client.reactions_add(
                    channel=target.channel, timestamp=target.message_ts, name=UPDATE_REACTION
                )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.error("slack reply failed", extra={"channel": target.channel, "error": describe(error)})

    async def _upload(
        self, client: AsyncWebClient, channel: str, thread_ts: str | None, attachment: Attachment
    ) -> None:
        await client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            content=attachment.content,
            filename=attachment.filename,
            title=attachment.filename,
        )

    async def _upload_to_user(self, client: AsyncWebClient, user_id: str, attachment: Attachment) -> None:
        """A CSV too long to show goes to the coach's DM with the bot: a response URL takes no files."""
        try:
            opened = await client.conversations_open(users=user_id)
            await self._upload(client, opened["channel"]["id"], None, attachment)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.error("slack file upload failed", extra={"error": describe(error)})

    async def send(self, recipient: str, reply: Reply, reference: dict[str, Any] | None) -> None:
        """Unprompted delivery (coach notices, reminders): a DM to a person, a post to a channel."""
        _, team_id, slack_id = recipient.split(":", 2)
        token = await self._token_for(team_id)
        if token is None:
            raise DeliveryError(f"no Slack installation for team {team_id}", permanent=True)
        channel = (reference or {}).get("channel") or slack_id
        client = web_client(self.config.api_base_url, token)
        try:
            await client.chat_postMessage(
                channel=channel, text=render.fallback_text(reply), blocks=render.render_blocks(reply)
            )
        except SlackApiError as error:
            if error.response.status_code == 429:
                raise DeliveryError("slack rate limited", retry_after=retry_after(error)) from None
            code = str(error.response.get("error"))
            raise DeliveryError(f"slack: {code}", permanent=code in PERMANENT_ERRORS) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"slack unreachable: {type(error).__name__}") from None


def retry_after(error: SlackApiError) -> float | None:
    value = error.response.headers.get("Retry-After") or error.response.headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return f"{error.response.status_code} {error.response.get('error')}"
    return type(error).__name__
