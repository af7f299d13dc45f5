"""Slack through Bolt's `AsyncApp`: a verified event, slash command or button click becomes an inbound
message, acknowledged once the hub has stored it; replies and notices come back through `send`, posted
in the message's thread, privately through a slash command's response URL, or as a DM (Block Kit)."""

import asyncio
import logging
import re
from typing import Any

import aiohttp
from pydantic import ValidationError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler, to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped, warning_token_skipped
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.slack import parse, render
from adapters.slack.client import TIMEOUT_SECONDS, web_client
from adapters.slack.config import SlackConfig, SlackConfigError
from adapters.slack.gate import BODY_TIMEOUT_SECONDS, COMMAND, MAX_BODY_BYTES, Gate, bolt_request
from adapters.slack.oauth_stores import InstallationStore, StateStore
from adapters.slack.parse import PLATFORM, RESOLVE_ACTION
from adapters.slack.token_crypto import TokenDecryptionError
from bot.core.messages import (
    UPDATE_RECORDED,
    Attachment,
    DeliveryError,
    InboundMessage,
    Reply,
    not_saved,
    still_saving,
)
from bot.runtime.http_input import body_or_refusal
from bot.runtime.hub import Hub, Unavailable, Undecided

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
SLASH_COMMAND = COMMAND  # the gate refuses any other
EVENTS_ROUTE = "/slack/events"
UPDATE_REACTION = "white_check_mark"
# A Slack payload names no language, and without the database the city's is not known: all three.
NOT_STORED = not_saved()
STILL_SAVING = still_saving()
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


class _TokenNotices(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself, then warns at start that it will not
    use it: we authorize every request ourselves, so the warning says nothing to whoever runs the bot."""

    SKIPPED = (warning_client_prioritized_and_token_skipped(), warning_token_skipped())

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.SKIPPED


BOLT_LOG = logging.getLogger("cda_bot.slack.bolt")
BOLT_LOG.addFilter(_TokenNotices())


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
    intake_paths = (EVENTS_ROUTE,)  # refused at the door past capacity

    def __init__(self, config: SlackConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.client = web_client(config.api_base_url)
        self._clients: dict[str, AsyncWebClient] = {}  # one per token: connections are reused
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self.installations = (
            InstallationStore(config.client_id, hub.engine, config.token_encryption_key)
            if config.client_id is not None
            else None
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
            # Slack is answered after the listener has stored the message, not before.
            process_before_response=True,
            logger=BOLT_LOG,
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
            state_store=StateStore(self.hub.engine, clock=self.hub.clock),
        )

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        if self.gate is not None:
            routes.append(Route(EVENTS_ROUTE, self._events, methods=["POST"]))
        if self.installations is not None:
            routes.append(Route("/slack/install", self.handler.handle, methods=["GET"]))
            routes.append(Route("/slack/oauth_redirect", self.handler.handle, methods=["GET"]))
        return routes

    async def _events(self, request: Request) -> Response:
        assert self.gate is not None
        # Unsigned or stale: refused on the headers alone, before a byte of the body is read.
        refused = self.gate.check_headers(request.headers)
        if refused is None:
            body = await body_or_refusal(request, MAX_BODY_BYTES, BODY_TIMEOUT_SECONDS, log)
            if isinstance(body, Response):
                return body
            refused = self.gate.check(body, request.headers)
        if refused is not None:
            log.warning(
                "slack request refused",
                extra={"status": refused.status_code, "retry": request.headers.get("x-slack-retry-num")},
            )
            return refused
        answer = await self.app.async_dispatch(bolt_request(body, request.headers, request.query_params))
        return to_starlette_response(answer)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        # One HTTP session for every Web API call, made on the running loop: without it the SDK opens
        # (and closes) a connection per call.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        self._session_loop = asyncio.get_running_loop()
        self.client.session = self._session
        for client in self._clients.values():
            client.session = self._session
        if self.config.bot_token is not None:
            await self._learn_identity()
        if self.installations is not None:
            try:
                await self.installations.async_check_key()
            except TokenDecryptionError as error:
                raise SlackConfigError(str(error)) from None
        if self.config.app_token is not None:
            self._socket = AsyncSocketModeHandler(self.app, self.config.app_token)
            await self._socket.connect_async()

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.client.session = None
            for client in self._clients.values():
                client.session = None

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

    # -- listeners: store the message, then acknowledge ---------------------------------------------
    def _listen(self) -> None:
        app = self.app

        @app.event("message")
        @app.event("app_mention")
        async def on_event(body: dict[str, Any], context: AsyncBoltContext) -> BoltResponse | None:
            # Bolt answers Slack when this returns (process_before_response): only after the message is
            # stored, so a 503 makes Slack send it again.
            message = parse.from_event(body, context.bot_user_id, self.hub.clock.now())
            if message is None:
                return None
            return await self._accept(message)

        @app.command(SLASH_COMMAND)
        async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
            message = parse.from_command(body, self.hub.clock.now())
            try:
                await self.hub.accept(message)
            except Undecided as undecided:
                # It may yet be stored: "nothing was saved" could be untrue, and a retry a second update.
                await ack(text=STILL_SAVING)
                # Should the write fail after all, the answer promised never comes: the person is told.
                self._tell_if_not_stored(undecided, message)
                return
            except Unavailable:
                # Slack never retries a slash command: say so now, while the person is looking.
                await ack(text=NOT_STORED)
                return
            await ack()

        @app.action(re.compile(f"^{RESOLVE_ACTION}"))
        async def on_action(
            ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
        ) -> BoltResponse | None:
            message = parse.from_action(body, action, self.hub.clock.now())
            refused = await self._accept(message, retried=False)
            if refused is None:
                await ack()
            return refused

        if self.installations is not None:
            app.enable_token_revocation_listeners()

        @app.event(re.compile(".*"))
        async def on_other_event() -> None:
            """Acknowledged and ignored: a 404 would make Slack retry it."""

        @app.error
        async def on_error(error: Exception) -> BoltResponse:
            # A payload the gate let through that still does not parse: the request's fault, not ours.
            if isinstance(error, parse.PayloadError | ValidationError):
                log.warning("slack payload refused", extra={"reason": str(error)[:200]})
                return BoltResponse(status=400, body='{"error": "unreadable Slack payload"}')
            log.error("slack listener failed", exc_info=error)
            return BoltResponse(status=500, body='{"error": "internal error"}')

    async def _accept(self, message: InboundMessage, retried: bool = True) -> BoltResponse | None:
        """None to acknowledge; a 503 when not stored, and Slack sends an event again (one stored after
        all is then dropped as a duplicate). A click it never sends again (`retried` False): one still
        being written is acknowledged, as a 503 would have the person click again; its answer follows
        if it is stored, and if it is not, they are told nothing was done."""
        try:
            await self.hub.accept(message)
        except Unavailable as unavailable:
            if isinstance(unavailable, Undecided) and not retried:
                self._tell_if_not_stored(unavailable, message)
                return None
            return BoltResponse(
                status=503,
                body='{"error": "temporarily unavailable"}',
                headers={"Retry-After": str(unavailable.retry_after), "Content-Type": "application/json"},
            )
        return None

    def _tell_if_not_stored(self, undecided: Undecided, message: InboundMessage) -> None:
        """Where its answer would have gone: a slash command's response URL, a click's conversation."""
        not_stored = Reply(text=NOT_STORED)
        self.hub.tell_if_not_stored(
            undecided, lambda: self.send(message.sender, not_stored, None, message.reply_context)
        )

    # -- out ------------------------------------------------------------------------------------------
    async def send(
        self,
        recipient: str,
        reply: Reply,
        reference: dict[str, Any] | None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Post `reply` to `recipient`: within `context` when it answers a message (its thread, or the
        slash command's response URL), else as a DM to a person or a post in a channel."""
        _, team_id, slack_id = recipient.split(":", 2)
        try:
            if context is not None and context.get("response_url"):
                await self._respond(team_id, str(context["response_url"]), context.get("user"), reply)
                return
            client = await self._client_for(team_id)
            if context is not None and "response_url" in context and context.get("user"):
                # Only the person saw what this answers (a slash command, a click in a channel), and Slack
                # sent no response URL for it: to them directly, never to the channel they were in.
                context = {"channel": str(context["user"])}
            channel = (context or reference or {}).get("channel") or slack_id
            thread_ts = (context or {}).get("thread_ts")
            if reply.attachment is not None and not render.inline_csv(reply.attachment):
                if channel[:1] in ("U", "W"):
                    # Files go to conversations only: a person's DM with the bot must be opened first.
                    channel = (await client.conversations_open(users=channel))["channel"]["id"]
                # One call carrying the text too, so a retry never posts the text twice.
                await self._upload(client, channel, thread_ts, reply.attachment, render.fallback_text(reply))
            else:
                await self._post(client, channel, thread_ts, reply)
        except SlackApiError as error:
            raise delivery_error(error) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"slack unreachable: {type(error).__name__}") from None
        if reply.kind == UPDATE_RECORDED and context is not None and context.get("message_ts"):
            await self._react(client, channel, str(context["message_ts"]))

    async def _respond(self, team_id: str, response_url: str, user: str | None, reply: Reply) -> None:
        """Only the person who typed the command sees the answer (an ephemeral response). A CSV too long
        to show goes to their DM with the bot: a response URL takes no files."""
        if reply.attachment is not None and not render.inline_csv(reply.attachment) and user:
            client = await self._client_for(team_id)
            opened = await client.conversations_open(users=user)
            await self._upload(client, opened["channel"]["id"], None, reply.attachment, None)
        shared = self._session if self._session_loop is asyncio.get_running_loop() else None
        webhook = AsyncWebhookClient(response_url, timeout=TIMEOUT_SECONDS, session=shared)
        answered = await webhook.send(
            text=render.fallback_text(reply),
            blocks=render.render_blocks(reply),
            response_type="ephemeral",
            replace_original=False,
        )
        if answered.status_code == 429:
            raise DeliveryError(
                "slack rate limited", retry_after=_seconds(answered.headers.get("retry-after"))
            )
        if answered.status_code in (404, 410):
            if not user:
                raise DeliveryError("slack: response URL expired", permanent=True)
            # Spent or expired (5 answers, 30 minutes: a Slack outage outlasted it): the answer goes to
            # the person's DM with the bot, which only they see too, rather than nowhere.
            await self._post(await self._client_for(team_id), user, None, reply)
            return
        if answered.status_code >= 300:
            raise DeliveryError(f"slack response URL answered {answered.status_code}")

    async def _post(self, client: AsyncWebClient, channel: str, thread_ts: str | None, reply: Reply) -> None:
        await client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=render.fallback_text(reply),
            blocks=render.render_blocks(reply),
        )

    async def _react(self, client: AsyncWebClient, channel: str, message_ts: str) -> None:
        """The ✅ on a recorded update is a nicety: failing it never sends the reply again."""
        try:
            await client.reactions_add(channel=channel, timestamp=message_ts, name=UPDATE_REACTION)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.info("slack reaction not added", extra={"channel": channel, "error": describe(error)})

    async def _upload(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str | None,
        attachment: Attachment,
        comment: str | None,
    ) -> None:
        await client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            content=attachment.as_file(),
            filename=attachment.filename,
            title=attachment.filename,
            initial_comment=comment,
        )

    async def _client_for(self, team_id: str) -> AsyncWebClient:
        token = await self._token_for(team_id)
        if token is None:
            raise DeliveryError(f"no Slack installation for team {team_id}", permanent=True)
        if self._session is None or self._session_loop is not asyncio.get_running_loop():
            return web_client(self.config.api_base_url, token)  # a session serves only its own loop
        client = self._clients.get(token)
        if client is None:
            client = self._clients[token] = web_client(self.config.api_base_url, token)
            client.session = self._session
        return client


def delivery_error(error: SlackApiError) -> DeliveryError:
    if error.response.status_code == 429:
        return DeliveryError("slack rate limited", retry_after=retry_after(error))
    code = str(error.response.get("error"))
    return DeliveryError(f"slack: {code}", permanent=code in PERMANENT_ERRORS)


def _seconds(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def retry_after(error: SlackApiError) -> float | None:
    return _seconds(error.response.headers.get("Retry-After") or error.response.headers.get("retry-after"))


def describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return f"{error.response.status_code} {error.response.get('error')}"
    return type(error).__name__
