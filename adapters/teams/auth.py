"""The door of `POST /api/messages`: who may post activities to the bot.

With an app id, every request carries a bearer token the Bot Framework signed: its signature is checked
against the keys the OpenID metadata publishes, then its issuer (the metadata's), its audience (our app
id), its expiry (5 minutes' leeway), and — once the body is read — that its `serviceurl` claim is the
activity's `serviceUrl` and that the signing key is endorsed for the activity's channel. Anything else
is 401; an activity of another channel than Teams' (Web Chat, Direct Line) is 403. The keys are fetched
with async HTTP, cached, and refreshed in the background; a key id never seen before makes one early
refresh (the Bot Framework rolls its keys), at most every few minutes. A token that passed is not
checked again while it lasts and the key that signed it is still published.

Without an app id there is nothing to check a token against: only the Agents Playground or the Emulator
on this machine may talk to the bot (a loopback client, naming a loopback serviceUrl)."""

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

log = logging.getLogger("cda_bot.teams.auth")

LEEWAY_SECONDS = 5 * 60
ALGORITHMS = ["RS256"]  # what the Bot Framework signs with
MAX_TOKEN_CHARS = 16_000
KEYS_MAX_AGE = 24 * 3600.0  # keys are refreshed in the background after this
UNKNOWN_KID_GAP = 60.0  # a key id not in the set refreshes it early, at most this often
FETCH_TIMEOUT = 10.0
FIRST_FETCH_WAIT = 5.0  # how long a request waits for keys never fetched before: Teams waits 15 s
FAILED_FETCH_GAP = 5.0  # after a failed fetch, requests do not start another one for this long
CHECKED_TOKENS = 1024  # tokens kept as checked (each bot and service has one at a time)


class Refused(Exception):
    """Why the request is not let in, as the status to answer and a short error for its JSON."""

    def __init__(self, error: str, status: int = 401, retry_after: int | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.retry_after = retry_after


TEAMS_CHANNEL = "msteams"
UNAUTHORIZED = "missing, malformed or invalid Bot Framework token"


@dataclass(frozen=True)
class SigningKey:
    key: Any  # what PyJWT verifies with
    endorsements: frozenset[str] | None  # channels the key may sign for; None when the key names none


@dataclass(frozen=True)
class Verified:
    claims: dict[str, Any]
    endorsements: frozenset[str] | None


# -- the keys ---------------------------------------------------------------------------------------


class KeySet:
    """The issuer and signing keys from an OpenID metadata document, cached for a day."""

    def __init__(
        self,
        metadata_url: str,
        monotonic: Callable[[], float] = time.monotonic,
        max_age: float = KEYS_MAX_AGE,
    ) -> None:
        self.metadata_url = metadata_url
        self.monotonic = monotonic
        self.max_age = max_age
        self.issuer: str | None = None
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._background: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(BaseException):
                await self._background
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def find(self, kid: str) -> SigningKey | None:
        """The key with this id; raises Refused(503) when no key set could ever be fetched."""
        if self._fetched_at is None:
            await self._refresh_within(FIRST_FETCH_WAIT)
            if self._fetched_at is None:
                raise Refused("signing keys unavailable; try again later", status=503, retry_after=5)
        elif self.monotonic() - self._fetched_at > self.max_age:
            self._refresh_in_background()  # the old keys stay good meanwhile
        found = self._keys.get(kid)
        if found is None and self._may_retry():
            # A key we have never seen: the Bot Framework may just have rolled its keys.
            await self._refresh_within(FIRST_FETCH_WAIT)
            found = self._keys.get(kid)
        return found

    async def prefetch(self) -> None:
        """At start: fetch the keys once so the first request does not wait; failing is only logged."""
        await self._refresh_within(FIRST_FETCH_WAIT)

    def _may_retry(self) -> bool:
        return self._tried_at is None or self.monotonic() - self._tried_at > UNKNOWN_KID_GAP

    def _refresh_in_background(self) -> asyncio.Task[None] | None:
        """The fetch under way, or a new one; None right after a failed one (no hammering)."""
        if self._background is not None and not self._background.done():
            return self._background
        failed_recently = (
            self._tried_at is not None
            and self._tried_at != self._fetched_at
            and self.monotonic() - self._tried_at < FAILED_FETCH_GAP
        )
        if failed_recently:
            return None
        self._background = asyncio.get_running_loop().create_task(self._refresh(), name="teams-keys")
        return self._background

    async def _refresh_within(self, seconds: float) -> None:
        task = self._refresh_in_background()
        if task is None:
            return
        # Shielded: a request that stops waiting does not cancel the fetch the next one will use.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), seconds)

    async def _refresh(self) -> None:
        async with self._lock:
            self._tried_at = self.monotonic()
            try:
                issuer, keys = await self._fetch()
            except Exception as error:
                log.warning(
                    "teams signing keys not fetched",
                    extra={"url": self.metadata_url, "error": f"{type(error).__name__}: {error}"[:200]},
                )
                return
            self.issuer, self._keys = issuer, keys
            self._fetched_at = self._tried_at
            log.info("teams signing keys fetched", extra={"keys": len(keys), "issuer": issuer})

    async def _fetch(self) -> tuple[str, dict[str, SigningKey]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT))
        metadata = await self._get_json(self.metadata_url)
        issuer, jwks_uri = metadata.get("issuer"), metadata.get("jwks_uri")
        if not isinstance(issuer, str) or not issuer or not isinstance(jwks_uri, str):
            raise ValueError("OpenID metadata without issuer or jwks_uri")
        document = await self._get_json(jwks_uri)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ValueError("JWKS without keys")
        keys: dict[str, SigningKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                key = jwt.PyJWK(entry, algorithm="RS256").key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key of another kind, or broken: no token can name it usefully
            endorsed = entry.get("endorsements")
            endorsements = (
                frozenset(str(e) for e in endorsed) if isinstance(endorsed, list) and endorsed else None
            )
            keys[entry["kid"]] = SigningKey(key, endorsements)
        if not keys:
            raise ValueError("JWKS without a usable RSA key")
        return issuer, keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(url) as response:
            response.raise_for_status()
            data = await response.json(content_type=None)
        if not isinstance(data, dict):
            raise ValueError(f"{url} is not a JSON object")
        return data


# -- the token --------------------------------------------------------------------------------------


def bearer(headers: Mapping[str, str]) -> str:
    """The one bearer token of the request; Refused when there is none, or more than one."""
    getlist = getattr(headers, "getlist", None)
    values = getlist("authorization") if getlist is not None else [headers.get("authorization")]
    values = [v for v in values if v is not None]
    if len(values) != 1:
        raise Refused(UNAUTHORIZED)
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise Refused(UNAUTHORIZED)
    return token


@dataclass(frozen=True)
class _Checked:
    """A token that passed, and what it passed with: it holds only while these do."""

    verified: Verified
    kid: str
    signing: SigningKey
    issuer: str
    expires: float  # real time, leeway included


class TokenGate:
    def __init__(self, app_id: str, keys: KeySet) -> None:
        # Tokens expire by the real time (PyJWT's), whatever clock the bot itself runs on.
        self.app_id = app_id
        self.keys = keys
        # The Bot Framework sends the same token for about an hour, and checking its RS256 signature
        # was a tenth of the Teams server's CPU: a token that passed is not checked again while it
        # lasts and the key that signed it is still published, unchanged (a rolled key clears it).
        self._checked: dict[str, _Checked] = {}

    async def verify(self, headers: Mapping[str, str]) -> Verified:
        """The token's claims, once its signature, issuer, audience and expiry hold; else Refused."""
        token = bearer(headers)
        checked = self._checked.get(token)
        if checked is not None:
            if (
                time.time() < checked.expires
                and await self.keys.find(checked.kid) is checked.signing
                and self.keys.issuer == checked.issuer
            ):
                return checked.verified
            self._checked.pop(token, None)  # (another request may have dropped it meanwhile)
        verified, checked = await self._check(token)
        if len(self._checked) >= CHECKED_TOKENS:
            del self._checked[next(iter(self._checked))]  # the oldest
        self._checked[token] = checked
        return verified

    async def _check(self, token: str) -> tuple[Verified, _Checked]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Refused(UNAUTHORIZED) from None
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str) or not kid:
            raise Refused(UNAUTHORIZED)
        signing = await self.keys.find(kid)
        if signing is None or self.keys.issuer is None:
            raise Refused(UNAUTHORIZED)
        try:
            claims = jwt.decode(
                token,
                signing.key,
                algorithms=ALGORITHMS,
                audience=self.app_id,
                issuer=self.keys.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as error:
            log.info("teams token refused", extra={"reason": type(error).__name__})
            raise Refused(UNAUTHORIZED) from None
        verified = Verified(claims, signing.endorsements)
        expires = float(claims["exp"]) + LEEWAY_SECONDS
        return verified, _Checked(verified, kid, signing, self.keys.issuer, expires)

    @staticmethod
    def check_activity(verified: Verified, service_url: str | None, channel_id: str | None) -> None:
        """The token must be for this activity: its service URL, and a key endorsed for its channel,
        which must be Teams'. The Bot Framework signs every channel of the Azure Bot with the same keys,
        and on some (Web Chat and Direct Line, on by default) the client picks `from` and `channelData`:
        such an activity could name any Teams person in any tenant."""
        claimed = verified.claims.get("serviceurl")
        if not isinstance(claimed, str) or not service_url or _same_url(claimed) != _same_url(service_url):
            raise Refused("token is not for this serviceUrl")
        if verified.endorsements is not None and (channel_id or "") not in verified.endorsements:
            raise Refused("token's key is not endorsed for this channel")
        if channel_id != TEAMS_CHANNEL:
            raise Refused("only Microsoft Teams activities are accepted", status=403)


def _same_url(url: str) -> str:
    return url.strip().rstrip("/")


# -- local development ------------------------------------------------------------------------------

FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)
    except ValueError:
        return False


def check_local_client(client_host: str | None, headers: Mapping[str, str]) -> None:
    """Without an app id, only a program on this machine may post, and not through a proxy."""
    if not is_loopback_host(client_host) or any(name in headers for name in FORWARDED):
        raise Refused("no MICROSOFT_APP_ID is set: only local clients (Agents Playground, Emulator) may post")


def check_local_service(service_url: str | None) -> None:
    if not is_loopback_url(service_url):
        raise Refused("no MICROSOFT_APP_ID is set: only a loopback serviceUrl is accepted")
