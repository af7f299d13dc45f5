"""The floors the inbound benchmark measures cda-bot against, served by uvicorn like cda-bot itself:
a bare Starlette endpoint that only checks Slack's signature, a Bolt app whose handler does nothing,
and for WhatsApp a bare endpoint that only checks Twilio's signature."""

import os
from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

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


# WhatsApp's floor: Twilio's own signature check over the form, and empty TwiML.
TWILIO_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "bench-twilio-token")
PUBLIC = os.environ.get("PUBLIC_BASE_URL", "https://bot.example.org")
twilio_validator = RequestValidator(TWILIO_TOKEN)


async def _twilio_bare(request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    signature = request.headers.get("X-Twilio-Signature", "")
    if not twilio_validator.validate(f"{PUBLIC}/twilio/whatsapp", form, signature):
        return Response(status_code=403)
    return Response("<Response></Response>", media_type="application/xml")


twilio_app = Starlette(routes=[Route("/twilio/whatsapp", _twilio_bare, methods=["POST"])])
