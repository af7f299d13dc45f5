"""Out to the Bot Connector, through the Agents SDK's `ConnectorClient`: post an activity to a
conversation (in a channel, as a reply in the post's thread), or open a personal chat with someone.

One connection pool for every service URL, and one client (a light session over the pool) per service
URL for as long as the bot's token lasts: making a `ConnectorClient` costs more than the call itself
(it looks up the SDK's version on disk for its User-Agent, every time), and a token lasts an hour. A
client whose token was replaced is closed once its last call is over. What the connector answers
becomes a `DeliveryError` the outbox understands: 429, 412 and 5xx are retried (after `Retry-After`
when given), a refusal that another try cannot change is permanent."""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from microsoft_agents.activity import Activity, ConversationParameters
from microsoft_agents.hosting.core.connector.client import ConnectorClient

from adapters.teams.tokens import BotTokens, TokenError
from bot.core.messages import DeliveryError

log = logging.getLogger("cda_bot.teams.connector")

TIMEOUT_SECONDS = 15.0
# Another attempt may succeed: throttled (429), a conflicting write (412), the service's own trouble.
RETRIED = frozenset({408, 412, 429, 500, 502, 503, 504})
# Another attempt cannot: the bot is not in the conversation (403), it does not exist (404), the
# activity is refused as it is (400, 413).
PERMANENT = frozenset({400, 403, 404, 405, 413})
_QUIET = logging.CRITICAL + 1
# The SDK logs every non-2xx answer as an error with the conversation id; the outbox decides what a
# failure means (a 429 is routine) and logs it once, without ids in the message.
for name in ("microsoft_agents.hosting.core.connector.client.connector_client",):
    logging.getLogger(name).setLevel(_QUIET)


def retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: the outbox's own backoff applies


@dataclass
class _Client:
    token: str
    client: ConnectorClient
    session: aiohttp.ClientSession
    calls: int = 0  # under way
    replaced: bool = False  # by one with a newer token: closed once `calls` is 0


class Connector:
    def __init__(self, tokens: BotTokens | None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.tokens = tokens  # None: local development, no token (the Emulator takes none)
        self.timeout = timeout
        self._pool: aiohttp.TCPConnector | None = None
        self._clients: dict[str, _Client] = {}  # service URL → its client of the current token

    async def close(self) -> None:
        if self.tokens is not None:
            self.tokens.close()
        clients, self._clients = list(self._clients.values()), {}
        for held in clients:
            await held.session.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _client(self, service_url: str) -> AsyncIterator[ConnectorClient]:
        token = ""
        if self.tokens is not None:
            try:
                token = await self.tokens.token()
            except TokenError as error:
                raise DeliveryError(f"teams: no bot token from Entra ({error})") from None
        held = await self._held(service_url, token)
        held.calls += 1
        try:
            yield held.client
        except aiohttp.ClientResponseError as error:
            raise self._failure(error) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"teams: connector unreachable ({type(error).__name__})") from None
        finally:
            held.calls -= 1
            if held.replaced and held.calls == 0:
                await held.session.close()

    async def _held(self, service_url: str, token: str) -> _Client:
        """The client for `service_url` carrying `token`, made when there is none yet."""
        base = service_url if service_url.endswith("/") else service_url + "/"
        earlier = self._clients.get(base)
        if earlier is not None and earlier.token == token and not earlier.session.closed:
            return earlier
        if self._pool is None or self._pool.closed:
            self._pool = aiohttp.TCPConnector(limit=100)
        session = aiohttp.ClientSession(
            base_url=base,
            connector=self._pool,
            connector_owner=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        held = self._clients[base] = _Client(token, ConnectorClient(base, token, session=session), session)
        if earlier is not None:
            earlier.replaced = True
            if earlier.calls == 0:
                await earlier.session.close()  # the pool's connections stay
        return held

    def _failure(self, error: aiohttp.ClientResponseError) -> DeliveryError:
        status = error.status
        if status == 401 and self.tokens is not None:
            self.tokens.forget()  # expired or revoked early: the next try fetches a fresh one
        code = _error_code(error.message)
        reason = f"teams: connector answered {status}" + (f" {code}" if code else "")
        if status in RETRIED:
            return DeliveryError(reason, retry_after=retry_after(error.headers))
        return DeliveryError(reason, permanent=status in PERMANENT)

    async def post(
        self, service_url: str, conversation_id: str, activity: dict[str, Any], reply_to_id: str | None
    ) -> str | None:
        """Post `activity` to the conversation (as a reply to `reply_to_id` when given); its id."""
        body = Activity.model_validate(activity)
        async with self._client(service_url) as client:
            if reply_to_id:
                sent = await client.conversations.reply_to_activity(conversation_id, reply_to_id, body)
            else:
                sent = await client.conversations.send_to_conversation(conversation_id, body)
        return sent.id

    async def create_personal(
        self, service_url: str, bot: dict[str, Any], user: dict[str, Any], tenant: str
    ) -> str:
        """The personal chat between the bot and `user` (Teams gives the existing one if there is one)."""
        parameters = ConversationParameters.model_validate(
            {
                "isGroup": False,
                "bot": bot,
                "members": [{"id": user["id"]}],
                "tenantId": tenant,
                "channelData": {"tenant": {"id": tenant}},
            }
        )
        async with self._client(service_url) as client:
            created = await client.conversations.create_conversation(parameters)
        if not created.id:
            raise DeliveryError("teams: the connector opened no personal chat")
        return created.id


def _error_code(message: str | None) -> str:
    """The connector's error code from its JSON answer (`{"error": {"code": "…"}}`), if it gave one."""
    if not message or not message.lstrip().startswith("{"):
        return ""
    try:
        data = json.loads(message)
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:80] if code else ""
