"""WhatsApp without Twilio: a local fake of the Messages API that records what the bot posts, webhook
forms signed with twilio's RequestValidator exactly as Twilio signs them (over the public URL, which
is not the one the test server listens on, as behind a proxy), and the real server under uvicorn on
127.0.0.1. Nothing here reaches the internet."""

import base64
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlmodel import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from bot import admin
from bot.runtime.serve import Server, build_server
from bot.runtime.settings import Settings
from store.models import InboxMessage, OutboxMessage
from tests.conftest import TestBot
from tests.platform_run import outbox_of, outbox_row, settle
from tests.slack_harness import SLACK_ENV, wait_until
from tests.teams_harness import TEAMS_ENV, serving

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-not-real"
SENDER = "whatsapp:+14155238886"
PUBLIC_BASE_URL = "https://bot.example.org"
ALPHA_NUMBER = "whatsapp:+15550000001"  # member of alpha (English)
GAMMA_NUMBER = "whatsapp:+573001112233"  # member of gamma (Spanish)
STRANGER = "whatsapp:+5511987654321"  # on no roster
TWILIO_ENV = [
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_WHATSAPP_FROM",
    "TWILIO_API_BASE_URL",
    "TWILIO_CONTENT_SIDS",
    "TWILIO_MESSAGES_PER_SECOND",
    "PUBLIC_BASE_URL",
]


@dataclass
class Sent:
    """One `POST /2010-04-01/Accounts/{sid}/Messages.json` the fake accepted."""

    account: str
    form: dict[str, str]
    authorization: str
    sid: str = ""

    @property
    def to(self) -> str:
        return self.form.get("To", "")

    @property
    def body(self) -> str:
        return self.form.get("Body", "")


@dataclass
class FakeTwilio:
    """The Messages API: checks basic auth with the account SID and token, answers `fail` statuses
    first, in order (a 429 with `Retry-After: {retry_after}`, a 4xx with `fail_code`), then 201."""

    sent: list[Sent] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    fail_code: int = 21211
    retry_after: int = 1
    refused: int = 0
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def messages(request: Request) -> Response:
            account = request.path_params["account"]
            expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
            authorization = request.headers.get("authorization", "")
            if authorization != expected or account != ACCOUNT_SID:
                return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            sid = "SM" + uuid.uuid4().hex
            with self.lock:
                status = self.fail.pop(0) if self.fail else 0
                if status:
                    self.refused += 1
                else:
                    self.sent.append(Sent(account, form, authorization, sid))
            if status:
                code = 20429 if status == 429 else (self.fail_code if status < 500 else 20500)
                return JSONResponse(
                    {"code": code, "message": "refused by the fake", "more_info": "", "status": status},
                    status_code=status,
                    headers={"Retry-After": str(self.retry_after)} if status == 429 else {},
                )
            return JSONResponse(
                {
                    "sid": sid,
                    "account_sid": account,
                    "to": form.get("To"),
                    "from": form.get("From"),
                    "body": form.get("Body"),
                    "status": "queued",
                    "num_segments": "1",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
                },
                status_code=201,
            )

        return Starlette(
            routes=[Route("/2010-04-01/Accounts/{account}/Messages.json", messages, methods=["POST"])]
        )

    def to(self, number: str) -> list[Sent]:
        with self.lock:
            return [s for s in self.sent if s.to == number]

    def wait_for(self, count: int = 1, timeout: float = 10) -> list[Sent]:
        wait_until(lambda: len(self.sent) >= count, timeout, f"{count} messages at the fake Twilio")
        with self.lock:
            return list(self.sent)


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it: over the URL it called and the form's fields."""
    return RequestValidator(token).compute_signature(url, form)


def inbound(
    sender: str, text: str, *, sid: str | None = None, media: list[str] | None = None, **extra: str
) -> dict[str, str]:
    """A WhatsApp message's webhook form, with the fields Twilio sends."""
    form = {
        "SmsMessageSid": sid or "SM" + uuid.uuid4().hex,
        "NumMedia": str(len(media or [])),
        "ProfileName": "Someone",
        "MessageType": "image" if media else "text",
        "SmsSid": "",
        "WaId": sender.removeprefix("whatsapp:+"),
        "SmsStatus": "received",
        "Body": text,
        "To": SENDER,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": "",
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    form["SmsSid"] = form["MessageSid"] = form["SmsMessageSid"]
    for index, url in enumerate(media or []):
        form[f"MediaUrl{index}"] = url
        form[f"MediaContentType{index}"] = "image/jpeg"
    form.update(extra)
    return form


@dataclass
class WhatsApp:
    """The running server with the fake Twilio; `post` sends a form signed as Twilio would."""

    url: str
    server: Server
    twilio: FakeTwilio
    bot: TestBot
    public_base_url: str = PUBLIC_BASE_URL

    def post(
        self,
        form: dict[str, str],
        *,
        path: str = "/twilio/whatsapp",
        signature: str | None = "valid",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if signature == "valid":
            signature = sign(f"{self.public_base_url}{path}", form)
        signed = {"X-Twilio-Signature": signature} if signature is not None else {}
        return httpx.post(
            f"{self.url}{path}",
            content=urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
                **signed,
                **(headers or {}),
            },
            timeout=10,
        )

    def settle(self, timeout: float = 15) -> None:
        settle(self.server, self.bot, "whatsapp", timeout)

    def row(self, key: str, done: Callable[[OutboxMessage], bool], timeout: float = 10) -> OutboxMessage:
        return outbox_row(self.bot, "whatsapp", key, done, timeout)

    def inbox(self) -> list[InboxMessage]:
        with self.bot.store() as store:
            query = select(InboxMessage).where(InboxMessage.platform == "whatsapp")
            return list(store.session.exec(query))

    def inbox_count(self) -> int:
        with self.bot.store() as store:
            query = select(func.count()).select_from(InboxMessage).where(InboxMessage.platform == "whatsapp")
            return store.session.exec(query).one()

    def outbox(self) -> list[OutboxMessage]:
        return outbox_of(self.bot, "whatsapp")


def add_whatsapp_people(bot: TestBot) -> None:
    with bot.store() as store:
        now = bot.clock.now()
        admin.add_member(store, ALPHA_NUMBER, "alpha", now, "Wanda WhatsApp")
        admin.add_member(store, GAMMA_NUMBER, "gamma", now, "Camila Rojas")


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*TWILIO_ENV, *TEAMS_ENV, *SLACK_ENV]:
        monkeypatch.delenv(name, raising=False)


def whatsapp_settings(api_base_url: str | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_whatsapp_from": SENDER,
        "public_base_url": PUBLIC_BASE_URL,
    }
    if api_base_url is not None:
        values["twilio_api_base_url"] = api_base_url
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def running_whatsapp(bot: TestBot, twilio: FakeTwilio, **extra: Any) -> Iterator[WhatsApp]:
    public = extra.get("public_base_url", PUBLIC_BASE_URL)
    server = build_server(whatsapp_settings(twilio.base_url, **extra), bot.engine, bot.clock, scheduler=False)
    with serving(server.app) as url:
        yield WhatsApp(url, server, twilio, bot, public)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def whatsapp_world(world: TestBot) -> TestBot:
    """The `world`, with a WhatsApp member of alpha (English) and one of gamma (Spanish)."""
    add_whatsapp_people(world)
    return world


@pytest.fixture
def fake_twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    clean_environment(monkeypatch)
    twilio = FakeTwilio()
    with serving(twilio.app()) as url:
        twilio.base_url = url
        yield twilio


@pytest.fixture
def whatsapp(whatsapp_world: TestBot, fake_twilio: FakeTwilio) -> Iterator[WhatsApp]:
    with running_whatsapp(whatsapp_world, fake_twilio) as running:
        yield running
