"""The floors the inbound benchmark measures cda-bot against, served by uvicorn like cda-bot itself:
a bare Starlette endpoint that only checks Slack's signature, a Bolt app whose handler does nothing,
a Bolt app that answers each message as cda-bot answers an update but stores nothing, for WhatsApp a
bare endpoint that only checks Twilio's signature, and for Teams one that only checks the Bot Framework
token (signature, issuer, audience, expiry); for WhatsApp and Teams also each of those answering as
cda-bot answers an update, storing nothing."""

import asyncio
import json
import os
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import jwt
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core.connector.client import ConnectorClient
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from adapters.slack import render
from adapters.slack.adapter import UPDATE_REACTION
from adapters.slack.client import web_client
from adapters.teams import render as teams_render
from adapters.whatsapp import render as whatsapp_render
from adapters.whatsapp.adapter import TwilioHttp
from benchmarks.fake_platforms import TEAMS_ISSUER
from bot.core.messages import UPDATE_RECORDED, Reply

SECRET = os.environ.get("SLACK_SIGNING_SECRET", "bench-signing-secret")
verifier = SignatureVerifier(SECRET)


async def _bare(request: Request) -> Response:
    body = await request.body()
    if not verifier.is_valid_request(body, dict(request.headers)):
        return Response(status_code=401)
    return Response(status_code=200)


bare_app = Starlette(routes=[Route("/slack/events", _bare, methods=["POST"])])


async def _authorize(**_: object) -> AuthorizeResult:
    # What cda-bot's own authorize does for one workspace: no call to Slack per event.
    return AuthorizeResult(enterprise_id=None, team_id="T0001", bot_token="xoxb-bench", bot_user_id="UBOT")


_bolt = AsyncApp(signing_secret=SECRET, authorize=_authorize)


@_bolt.event("message")
async def _nothing() -> None:
    return None


_handler = AsyncSlackRequestHandler(_bolt)


async def _bolt_events(request: Request) -> Response:
    return await _handler.handle(request)


bolt_app = Starlette(routes=[Route("/slack/events", _bolt_events, methods=["POST"])])


# The floor for answering: what any Slack app spends to answer an update the way cda-bot does (a reply in
# the message's thread, then a ✅), through the same slack_sdk client on one kept session, after the
# acknowledgement, with nothing stored. Bolt queues the answers without bound, so its figure is the
# rate they reach the platform, not the rate of acknowledgements.
_answering = AsyncApp(signing_secret=SECRET, authorize=_authorize)
_REPLY = Reply(text="Update recorded for City 1.", kind=UPDATE_RECORDED)


# Each floor's client is made at its first answer, on the running loop its aiohttp session needs.
@cache
def _slack_client() -> AsyncWebClient:
    client = web_client(os.environ["SLACK_API_BASE_URL"], "xoxb-bench")
    client.session = aiohttp.ClientSession()
    return client


@_answering.event("message")
async def _answer(event: dict[str, Any]) -> None:
    client = _slack_client()
    channel, ts = event["channel"], event["ts"]
    await client.chat_postMessage(
        channel=channel,
        thread_ts=ts,
        text=render.fallback_text(_REPLY),
        blocks=render.render_blocks(_REPLY),
    )
    await client.reactions_add(channel=channel, timestamp=ts, name=UPDATE_REACTION)


_answering_handler = AsyncSlackRequestHandler(_answering)


async def _answering_events(request: Request) -> Response:
    return await _answering_handler.handle(request)


answering_app = Starlette(routes=[Route("/slack/events", _answering_events, methods=["POST"])])


# WhatsApp's floor: Twilio's own signature check over the form, and empty TwiML.
TWILIO_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "bench-twilio-token")
PUBLIC = os.environ.get("PUBLIC_BASE_URL", "https://bot.example.org")
twilio_validator = RequestValidator(TWILIO_TOKEN)


async def _twilio_signed(request: Request) -> dict[str, str] | None:
    """The form, if Twilio signed it."""
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    signature = request.headers.get("X-Twilio-Signature", "")
    return form if twilio_validator.validate(f"{PUBLIC}/twilio/whatsapp", form, signature) else None


async def _twilio_bare(request: Request) -> Response:
    if await _twilio_signed(request) is None:
        return Response(status_code=403)
    return Response("<Response></Response>", media_type="application/xml")


twilio_app = Starlette(routes=[Route("/twilio/whatsapp", _twilio_bare, methods=["POST"])])


# WhatsApp's floor for answering: the same check, and after the TwiML the reply cda-bot gives an update
# sent through twilio's async client (one kept client, pointed at TWILIO_API_BASE_URL as cda-bot's is),
# with nothing stored.
_answers: set[asyncio.Task[None]] = set()


def _keep(answer: asyncio.Task[None]) -> None:
    _answers.add(answer)  # until done: the loop holds tasks only weakly
    answer.add_done_callback(_answers.discard)


async def _twilio_answering(request: Request) -> Response:
    form = await _twilio_signed(request)
    if form is None:
        return Response(status_code=403)
    _keep(asyncio.get_running_loop().create_task(_twilio_reply(form["To"], form["From"])))
    return Response("<Response></Response>", media_type="application/xml")


@cache
def _twilio_client() -> Client:
    http = TwilioHttp(os.environ.get("TWILIO_API_BASE_URL"))
    return Client(os.environ.get("TWILIO_ACCOUNT_SID"), TWILIO_TOKEN, http_client=http)


async def _twilio_reply(sender: str, to: str) -> None:
    await _twilio_client().messages.create_async(
        from_=sender,
        to=to,
        body=whatsapp_render.render(_REPLY),
        status_callback=f"{PUBLIC}/twilio/status",
    )


twilio_answering_app = Starlette(routes=[Route("/twilio/whatsapp", _twilio_answering, methods=["POST"])])


# Teams' floor: the token checked as cda-bot checks it, with the key the local JWKS publishes (given here
# directly: fetching it is start-up, not per request).
TEAMS_APP_ID = os.environ.get("MICROSOFT_APP_ID", "")
_teams_jwk = os.environ.get("BENCH_TEAMS_JWK")
teams_key = jwt.PyJWK(json.loads(_teams_jwk), algorithm="RS256").key if _teams_jwk else None


def _teams_caller(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or teams_key is None:
        return False
    try:
        jwt.decode(
            token,
            teams_key,
            algorithms=["RS256"],
            audience=TEAMS_APP_ID,
            issuer=TEAMS_ISSUER,
            leeway=300,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.InvalidTokenError:
        return False
    return True


async def _teams_bare(request: Request) -> Response:
    await request.body()
    return Response(status_code=200 if _teams_caller(request) else 401)


teams_app = Starlette(routes=[Route("/api/messages", _teams_bare, methods=["POST"])])


# Teams' floor for answering: the token checked as above, the activity read with the Agents SDK's model,
# and, after the 200, the reply cda-bot gives an update posted in the post's thread through the SDK's
# ConnectorClient (one kept client for the service URL; its bot token is fixed here, where cda-bot asks
# Entra for one an hour), with nothing stored.
async def _teams_answering(request: Request) -> Response:
    body = await request.body()
    if not _teams_caller(request):
        return Response(status_code=401)
    _keep(asyncio.get_running_loop().create_task(_teams_reply(Activity.model_validate_json(body))))
    return Response(status_code=200)


@cache
def _connector(base: str) -> ConnectorClient:
    return ConnectorClient(base, "bench-bot-token", session=aiohttp.ClientSession(base_url=base))


async def _teams_reply(activity: Activity) -> None:
    client = _connector(str(activity.service_url).rstrip("/") + "/")
    conversation = activity.conversation.id
    reply = teams_render.activity(_REPLY)
    reply.update({"from": activity.recipient.model_dump(), "conversation": {"id": conversation}})
    reply.update({"channelId": activity.channel_id, "replyToId": activity.id})
    await client.conversations.reply_to_activity(conversation, activity.id, Activity.model_validate(reply))


teams_answering_app = Starlette(routes=[Route("/api/messages", _teams_answering, methods=["POST"])])
