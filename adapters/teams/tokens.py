"""The bot's own access token for the Bot Connector: Entra's client-credentials grant through MSAL,
cached until five minutes before it expires. MSAL is synchronous, so it runs in a worker thread: a
token fetch never holds up the event loop."""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msal

from adapters.teams.config import BOT_SCOPE

log = logging.getLogger("cda_bot.teams.tokens")

REFRESH_BEFORE = 5 * 60.0  # seconds before expiry a token is replaced
TOKEN_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0  # each of MSAL's own requests


class TokenError(Exception):
    """No token could be had (Entra unreachable, the secret refused): the send is retried later."""


class BotTokens:
    def __init__(
        self,
        app_id: str,
        secret: str,
        authority: str,
        scope: str = BOT_SCOPE,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self._secret = secret
        self.authority = authority
        self.scope = scope
        self.now = now
        self._app: msal.ConfidentialClientApplication | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and self.now() < self._expires_at - REFRESH_BEFORE:
            return self._token
        async with self._lock:  # one fetch for every send waiting on it
            if self._token is not None and self.now() < self._expires_at - REFRESH_BEFORE:
                return self._token
            try:
                result = await asyncio.wait_for(asyncio.to_thread(self._acquire), TOKEN_TIMEOUT)
            except TimeoutError:
                raise TokenError("Entra did not answer in time") from None
            except TokenError:
                raise
            except Exception as error:  # MSAL raises ValueError, requests' errors and its own
                raise TokenError(f"{type(error).__name__}: {str(error)[:200]}") from None
            token = result.get("access_token")
            if not isinstance(token, str) or not token:
                reason = result.get("error_description") or result.get("error") or "no access_token"
                raise TokenError(str(reason)[:300])
            self._token = token
            self._expires_at = self.now() + float(result.get("expires_in") or 3600)
            log.info("teams bot token acquired", extra={"expires_in": result.get("expires_in")})
            return token

    def close(self) -> None:
        """Let go of MSAL's connections (at shutdown)."""
        if self._app is not None:
            self._app.http_client.close()
            self._app = None

    def forget(self) -> None:
        """The connector refused the token: fetch a new one next time."""
        self._token = None
        self._expires_at = 0.0

    def _acquire(self) -> dict[str, Any]:
        # Built here, off the loop: MSAL reads the authority's OpenID configuration when it is made.
        if self._app is None:
            self._app = msal.ConfidentialClientApplication(
                self.app_id,
                client_credential=self._secret,
                authority=self.authority,
                # Only Entra's own hosts are known to its instance discovery; an overridden authority
                # (another cloud, a test double) is taken as configured.
                instance_discovery=False,
                timeout=HTTP_TIMEOUT,
            )
        return self._app.acquire_token_for_client(scopes=[self.scope])
