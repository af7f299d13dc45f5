"""Teams without Microsoft: a local Bot Connector that records what the bot posts, a local OpenID
metadata + JWKS server whose test RSA key signs the tokens the tests send, a local Entra token endpoint
(over https, as MSAL insists), and the real server under uvicorn on 127.0.0.1. Nothing here reaches the
internet."""

import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import admin
from bot.runtime.serve import Server, build_server
from bot.runtime.settings import Settings
from store.models import InboxMessage, OutboxMessage
from tests.conftest import TestBot
from tests.platform_run import outbox_of, outbox_row, settle
from tests.slack_harness import SLACK_ENV, wait_until
from tests.slack_harness import serving as slack_serving
from tests.tls import self_signed

APP_ID = "11111111-2222-4333-8444-555555555555"
APP_PASSWORD = "test-client-secret-not-real"
BOT = {"id": f"28:{APP_ID}", "name": "cda-bot"}
TENANT = "0f0f0f0f-1111-4222-8333-444444444444"
ISSUER = "https://api.botframework.com"
KID = "test-key-1"
LOOPBACK = ipaddress.ip_address("127.0.0.1")
CHANNEL_THREAD = "19:alpha-channel@thread.tacv2"  # bound to alpha in `teams_world`
OTHER_CHANNEL = "19:unbound-channel@thread.tacv2"
MEMBER_AAD = "aaaaaaaa-0000-4000-8000-000000000001"  # member of alpha
BETA_AAD = "bbbbbbbb-0000-4000-8000-000000000002"  # member of beta
COACH_AAD = "cccccccc-0000-4000-8000-000000000003"  # coach of alpha
MEMBER = f"teams:{TENANT}:{MEMBER_AAD}"
BETA_MEMBER = f"teams:{TENANT}:{BETA_AAD}"
COACH = f"teams:{TENANT}:{COACH_AAD}"
CHANNEL = f"teams:{TENANT}:{CHANNEL_THREAD}"
# What a test server must not inherit from whoever runs the tests.
TEAMS_ENV = [
    "MICROSOFT_APP_ID",
    "MICROSOFT_APP_PASSWORD",
    "MICROSOFT_APP_TYPE",
    "MICROSOFT_APP_TENANT_ID",
    "MICROSOFT_OPENID_METADATA_URL",
    "MICROSOFT_AUTHORITY_URL",
    "MICROSOFT_LOCAL_DEVELOPMENT",
]


class TeamsSettings(Settings):
    """The settings the Teams adapter reads by name (until Settings has them as fields)."""

    microsoft_openid_metadata_url: str | None = None
    microsoft_authority_url: str | None = None
    microsoft_local_development: bool = False


# -- uvicorn, plain and https ----------------------------------------------------------------------


def serving(app: Any, tls: tuple[Path, Path] | None = None, graceful_seconds: float = 2) -> Any:
    """The Slack harness's server, with the shorter shutdown these tests want."""
    return slack_serving(app, graceful_seconds, tls)


# -- keys and tokens -------------------------------------------------------------------------------


@dataclass
class Signer:
    """A test RSA key: signs Bot Framework-like tokens, and is published in the local JWKS."""

    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = KID

    def jwk(self, endorsements: list[str] | None = None) -> dict[str, Any]:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        data["endorsements"] = endorsements if endorsements is not None else ["msteams", "emulator"]
        return data

    def token(
        self,
        service_url: str,
        *,
        audience: str = APP_ID,
        issuer: str = ISSUER,
        expires_in: float = 3600,
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": issuer,
            "aud": audience,
            "exp": now + int(expires_in),
            "nbf": now - 60,
            "serviceurl": service_url,
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": kid or self.kid})


@dataclass
class OpenId:
    """The Bot Framework's OpenID metadata and JWKS, published locally."""

    signer: Signer
    base_url: str = ""
    fetches: int = 0
    endorsements: list[str] | None = None

    def app(self) -> Starlette:
        async def metadata(_: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": ISSUER,
                    "jwks_uri": f"{self.base_url}/v1/.well-known/keys",
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )

        async def keys(_: Request) -> Response:
            self.fetches += 1
            return JSONResponse({"keys": [self.signer.jwk(self.endorsements)]})

        return Starlette(
            routes=[
                Route("/v1/.well-known/openidconfiguration", metadata),
                Route("/v1/.well-known/keys", keys),
            ]
        )

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"


@dataclass
class Entra:
    """The token endpoint of a tenant, enough for MSAL's client-credentials grant."""

    base_url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: int = 0

    def app(self) -> Starlette:
        async def configuration(request: Request) -> Response:
            tenant = request.path_params["tenant"]
            return JSONResponse(
                {
                    "issuer": f"{self.base_url}/{tenant}/v2.0",
                    "authorization_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                }
            )

        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            self.requests.append(form)
            if form.get("client_secret") != APP_PASSWORD:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            self.issued += 1
            return JSONResponse(
                {"token_type": "Bearer", "expires_in": 3599, "access_token": f"bot-token-{self.issued}"}
            )

        return Starlette(
            routes=[
                Route("/{tenant}/v2.0/.well-known/openid-configuration", configuration),
                Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
            ]
        )

    @property
    def authority(self) -> str:
        return f"{self.base_url}/botframework.com"


# -- the Bot Connector ------------------------------------------------------------------------------


@dataclass
class Posted:
    conversation: str
    reply_to: str | None
    activity: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def card(self) -> dict[str, Any] | None:
        attachments = self.activity.get("attachments") or []
        return attachments[0]["content"] if attachments else None

    @property
    def words(self) -> str:
        """What a reader sees: the text, or the card's text blocks and facts."""
        if self.card is None:
            return str(self.activity.get("text", ""))
        return json.dumps(self.card, ensure_ascii=False)


@dataclass
class FakeConnector:
    """Records `POST /v3/conversations/{id}/activities[/{replyToId}]` and `POST /v3/conversations`;
    answers `fail` statuses first (e.g. [429]), in order, a 429 with `Retry-After: {retry_after}`."""

    posts: list[Posted] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)  # conversation id → status, every time
    retry_after: int = 1
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def activities(request: Request) -> Response:
            conversation = request.path_params["conversation"]
            reply_to = request.path_params.get("reply_to")
            body = json.loads(await request.body())
            with self.lock:
                status = self.fail.pop(0) if self.fail else self.refuse.get(conversation, 0)
                if not status:
                    self.posts.append(
                        Posted(conversation, reply_to, body, dict(request.headers), time.monotonic())
                    )
            if status:
                return JSONResponse(
                    {"error": {"code": "Throttled" if status == 429 else "Refused", "message": "no"}},
                    status_code=status,
                    headers={"Retry-After": str(self.retry_after)} if status == 429 else {},
                )
            return JSONResponse({"id": f"reply-{uuid.uuid4().hex[:8]}"}, status_code=201)

        async def create(request: Request) -> Response:
            body = json.loads(await request.body())
            with self.lock:
                self.created.append({"body": body, "headers": dict(request.headers)})
            member = body["members"][0]["id"]
            return JSONResponse({"id": f"a:personal-{member}"}, status_code=201)

        return Starlette(
            routes=[
                Route("/v3/conversations", create, methods=["POST"]),
                Route("/v3/conversations/{conversation}/activities", activities, methods=["POST"]),
                Route("/v3/conversations/{conversation}/activities/{reply_to}", activities, methods=["POST"]),
            ]
        )

    def to(self, conversation: str) -> list[Posted]:
        with self.lock:
            return [p for p in self.posts if p.conversation == conversation]

    def wait_for(self, count: int = 1, timeout: float = 10) -> list[Posted]:
        wait_until(lambda: len(self.posts) >= count, timeout, f"{count} activities at the connector")
        with self.lock:
            return list(self.posts)


# -- activities ------------------------------------------------------------------------------------


def message(
    service_url: str,
    text: str,
    *,
    activity_id: str = "1700000000001",
    conversation: str = CHANNEL_THREAD,
    conversation_type: str = "channel",
    user: str = MEMBER_AAD,
    mention: bool = True,
    value: dict[str, Any] | None = None,
    tenant: str | None = TENANT,
) -> dict[str, Any]:
    """A message as Teams posts it; in a channel, mentioning the bot, like `<at>cda-bot</at> …`."""
    thread = f"{conversation};messageid={activity_id}" if conversation_type == "channel" else conversation
    body: dict[str, Any] = {
        "type": "message",
        "id": activity_id,
        "timestamp": "2026-11-28T12:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": f"29:{user}", "name": "Someone", "aadObjectId": user},
        "conversation": {
            "isGroup": conversation_type != "personal",
            "conversationType": conversation_type,
            "id": thread,
            **({"tenantId": tenant} if tenant else {}),
        },
        "recipient": dict(BOT),
        "textFormat": "plain",
        "text": f"<at>cda-bot</at> {text}" if mention else text,
        "locale": "en-US",
        "channelData": {"tenant": {"id": tenant}} if tenant else {},
    }
    if mention:
        body["entities"] = [{"type": "mention", "text": "<at>cda-bot</at>", "mentioned": dict(BOT)}]
    if conversation_type == "channel":
        body["channelData"].update({"channel": {"id": conversation}, "team": {"id": "19:team@thread.tacv2"}})
    if value is not None:
        body["value"] = value
        body["text"] = ""
        body.pop("entities", None)
    return body


def installed(
    service_url: str,
    *,
    conversation: str = CHANNEL_THREAD,
    conversation_type: str = "channel",
    user: str = MEMBER_AAD,
    activity_id: str = "install-1",
    removed: bool = False,
) -> dict[str, Any]:
    """`conversationUpdate` with the bot among `membersAdded` (or `membersRemoved`)."""
    body: dict[str, Any] = {
        "type": "conversationUpdate",
        "id": activity_id,
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": f"29:{user}", "aadObjectId": user},
        "conversation": {
            "isGroup": conversation_type != "personal",
            "conversationType": conversation_type,
            "id": conversation,
            "tenantId": TENANT,
        },
        "recipient": dict(BOT),
        ("membersRemoved" if removed else "membersAdded"): [{"id": BOT["id"]}],
        "channelData": {"tenant": {"id": TENANT}},
    }
    if conversation_type == "channel":
        body["channelData"]["team"] = {"id": conversation}
    return body


# -- the running bot -------------------------------------------------------------------------------


@dataclass
class Teams:
    """The running server with its fakes; `post` sends an activity with a valid token."""

    url: str
    server: Server
    connector: FakeConnector
    signer: Signer
    bot: TestBot
    openid: OpenId | None = None
    entra: Entra | None = None

    @property
    def service_url(self) -> str:
        return self.connector.base_url

    def post(
        self, activity: dict[str, Any], token: str | None = "valid", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        if token == "valid":
            token = self.signer.token(str(activity.get("serviceUrl")))
        auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.post(
            f"{self.url}/api/messages",
            content=json.dumps(activity).encode(),
            headers={"Content-Type": "application/json", **auth, **(headers or {})},
            timeout=10,
        )

    def settle(self, timeout: float = 15) -> None:
        settle(self.server, self.bot, "teams", timeout)

    def row(self, key: str, done: Callable[[OutboxMessage], bool], timeout: float = 10) -> OutboxMessage:
        return outbox_row(self.bot, "teams", key, done, timeout)

    def inbox(self) -> int:
        with self.bot.store() as store:
            query = select(func.count()).select_from(InboxMessage).where(InboxMessage.platform == "teams")
            return store.session.exec(query).one()

    def outbox(self) -> list[OutboxMessage]:
        return outbox_of(self.bot, "teams")


def add_teams_people(bot: TestBot) -> None:
    with bot.store() as store:
        now = bot.clock.now()
        admin.add_member(store, MEMBER, "alpha", now, "Tess Teams")
        admin.add_member(store, BETA_MEMBER, "beta", now, "Ben Beta")
        admin.add_coach(store, COACH, ["alpha"], now, "Cleo Coach")
        admin.bind(store, CHANNEL, "alpha", now)


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*TEAMS_ENV, *SLACK_ENV]:
        monkeypatch.delenv(name, raising=False)


def teams_settings(openid: OpenId | None, entra: Entra | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {}
    if openid is not None:
        values.update(
            microsoft_app_id=APP_ID,
            microsoft_app_password=APP_PASSWORD,
            microsoft_app_type="MultiTenant",
            microsoft_openid_metadata_url=openid.metadata_url,
        )
    else:
        values["microsoft_local_development"] = True
    if entra is not None:
        values["microsoft_authority_url"] = entra.authority
    values.update(extra)
    return TeamsSettings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeConnector, OpenId, Entra]]:
    """The connector, the OpenID/JWKS server and Entra, each running on 127.0.0.1."""
    clean_environment(monkeypatch)
    connector, openid, entra = FakeConnector(), OpenId(Signer()), Entra()
    tls = self_signed(tmp_path)
    # MSAL (requests) trusts the test certificate; nothing else in the process is affected.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[0]))
    with (
        serving(connector.app()) as c_url,
        serving(openid.app()) as o_url,
        serving(entra.app(), tls) as e_url,
    ):
        connector.base_url, openid.base_url, entra.base_url = c_url, o_url, e_url
        yield connector, openid, entra


@contextmanager
def running_teams(
    bot: TestBot, connector: FakeConnector, openid: OpenId | None, entra: Entra | None
) -> Iterator[Teams]:
    server = build_server(teams_settings(openid, entra), bot.engine, bot.clock, scheduler=False)
    with serving(server.app) as url:
        yield Teams(url, server, connector, openid.signer if openid else Signer(), bot, openid, entra)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def teams_world(world: TestBot) -> TestBot:
    """The `world`, with a Teams member of alpha and one of beta, a Teams coach of alpha, and a Teams
    channel bound to alpha."""
    add_teams_people(world)
    return world


@pytest.fixture
def teams_fakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeConnector, OpenId, Entra]]:
    with fakes(tmp_path, monkeypatch) as running:
        yield running


@pytest.fixture
def teams(teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]) -> Iterator[Teams]:
    """The bot registered with an app id: tokens checked against the local JWKS, its own from Entra."""
    connector, openid, entra = teams_fakes
    with running_teams(teams_world, connector, openid, entra) as running:
        yield running


@pytest.fixture
def local_teams(teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]) -> Iterator[Teams]:
    """The bot without an app id: local development, loopback only."""
    connector, _, _ = teams_fakes
    with running_teams(teams_world, connector, None, None) as running:
        yield running
