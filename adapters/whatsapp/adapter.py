"""WhatsApp through Twilio on the common message path: `POST /twilio/whatsapp` lets in what Twilio
signed with the account's auth token, turns a message from a rostered number into an inbound message
and answers empty TwiML once the hub has stored it. When it could not be stored, the answer is TwiML
telling the sender nothing was saved: Twilio sends a message again after a 5xx only if the webhook's
URL asks it to, and then within 15 s, so a bare 503 would lose it without a word. One still being
written at the deadline gets the 503, as it may yet be stored; should it not be, the sender is told by
a message of its own.
Replies and unprompted messages come back through `send`, posted to the Messages API with twilio's
async client. `POST /twilio/status` takes delivery status callbacks (503 while the database is away;
Twilio does not report again, so that delivery state goes unrecorded)."""

import base64
import contextvars
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from adapters.whatsapp import parse, render
from adapters.whatsapp.config import ROUTE, STATUS_ROUTE, WhatsAppConfig
from adapters.whatsapp.parse import PLATFORM, PayloadError
from bot.core.identity import IdentityError, normalize_identity
from bot.core.messages import DeliveryError, Reply, not_saved
from bot.runtime.http_input import BodyError, read_body
from bot.runtime.hub import Hub, Unavailable, Undecided

log = logging.getLogger("cda_bot.whatsapp")

MAX_BODY_BYTES = 256_000  # a WhatsApp form is a few kilobytes, a 1,600-character body included
BODY_TIMEOUT_SECONDS = 10.0  # Twilio waits 15 s for its answer
SEND_TIMEOUT_SECONDS = 20.0
SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio error codes that no retry will cure: the number, the sender or the recipient's choice.
PERMANENT_CODES = frozenset(
    {
        21211,  # 'To' is no valid phone number
        21408,  # sending to this region is not enabled
        21610,  # the recipient replied STOP
        21612,  # this 'To' cannot be reached from this 'From'
        21614,  # 'To' is no mobile number
        30003,  # unreachable destination
        30005,  # unknown destination
        30006,  # landline or unreachable carrier
        30007,  # filtered by the carrier
        63003,  # the channel could not find the recipient (no WhatsApp)
        63016,  # outside the 24-hour window: free text refused, only a template may go
        63024,  # invalid message recipient
    }
)
RETRYABLE_CODES = frozenset({20429, 30001, 30008, 63018})  # too many requests, queue overflow, unknown
# What an admin reads beside the code (in `reminders list` and `/cda status`), for the usual ones.
EXPLAINED = {
    20429: "too many requests",
    21211: "not a valid phone number",
    21408: "sending to this region is not enabled in Twilio",
    21610: "the recipient replied STOP to Twilio",
    21612: "this number cannot be reached from the sender",
    21614: "not a mobile number",
    30003: "the phone is unreachable",
    30005: "unknown number",
    30006: "landline or unreachable carrier",
    30007: "filtered by the carrier",
    30008: "unknown error",
    63003: "this number is not on WhatsApp",
    63016: "outside the 24-hour window: only an approved template may go (TWILIO_CONTENT_SIDS)",
    63018: "the sender's rate limit was exceeded",
    63024: "invalid recipient",
}
# A number that wrote within this long may get free text; a little under WhatsApp's 24 hours, so a
# message that waits a moment in Twilio's queue is still inside when it leaves.
WINDOW = timedelta(hours=24) - timedelta(minutes=10)
MAX_TEMPLATE_TITLE = 100
MAX_TEMPLATE_TEXT = 900  # a template's body is at most 1,024 characters, its own words included


# The Retry-After of the last answer Twilio gave in this task (TwilioRestException has no headers).
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None
)


class TwilioHttp(AsyncTwilioHttpClient):
    """twilio's async client, pointed at `base_url` for every Twilio host when one is set (a test
    double, a regional edge), and keeping each answer's Retry-After for the delivery's retry."""

    def __init__(self, base_url: str | None, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout)
        self.base = urlsplit(base_url) if base_url else None

    def _rebased(self, url: str) -> str:
        if self.base is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        path = self.base.path.rstrip("/") + parts.path
        return urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, parts.fragment))

    async def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> TwilioResponse:
        _retry_after.set(None)
        auth = kwargs.pop("auth", None)
        if auth is not None:
            # As a header: aiohttp deprecates its `auth` parameter, which the SDK would pass.
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Basic {token}"}
        response = await super().request(method, self._rebased(url), *args, **kwargs)
        _retry_after.set(_seconds(response.headers.get("Retry-After") if response.headers else None))
        return response

    # twilio writes each request's and answer's headers, eleven lines a message, formatting them
    # whether or not anyone listens: only when its logger is turned up (`logs.configure` keeps it down).
    def log_request(self, kwargs: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the delivery's own backoff is good enough


def twiml(say: str | None = None) -> Response:
    if say is None:
        return Response(EMPTY_TWIML, media_type="application/xml")
    body = f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(say)}</Message></Response>'
    return Response(body, media_type="application/xml")


def refusal(status: int, error: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return JSONResponse({"error": error[:200]}, status_code=status, headers=headers)


def error_text(code: int | None, detail: str) -> str:
    """The same words for an error whether `create` returned it or a status callback reported it."""
    if code is None:
        return f"whatsapp: {detail}"[:500]
    return f"whatsapp error {code}: {EXPLAINED.get(code, detail)}"[:500]


def delivery_error(error: TwilioRestException, retry_after: float | None) -> DeliveryError:
    """What the deliverer should do about a refused send: wait and retry, or give up for good."""
    code = error.code if isinstance(error.code, int) else None
    message = error_text(code, f"Twilio answered {error.status}: {error.msg}")
    if error.status == 429 or (code in RETRYABLE_CODES):
        return DeliveryError(message, retry_after=retry_after)
    if error.status >= 500:
        return DeliveryError(message, retry_after=retry_after)
    if code in PERMANENT_CODES:
        return DeliveryError(message, permanent=True)
    # Credentials or account trouble (401, 403, 404) is the operator's to fix: tried again meanwhile.
    if error.status in (401, 403, 404):
        return DeliveryError(message, retry_after=retry_after)
    return DeliveryError(message, permanent=True)  # another 400: the same request fails the same way


def reported_error(code: int | None) -> DeliveryError:
    """A failure a status callback reports, judged as the same code returned by `create` would be."""
    message = error_text(code, "failed after Twilio accepted it")
    return DeliveryError(message, permanent=code not in RETRYABLE_CODES)


def window_opened(*sources: dict[str, Any] | None) -> datetime | None:
    """When the number last wrote, from the reply's context or the stored reference; None if never."""
    found: list[datetime] = []
    for source in sources:
        value = (source or {}).get(parse.WINDOW_OPENED)
        if isinstance(value, str):
            try:
                found.append(datetime.fromisoformat(value))
            except ValueError:
                continue
    return max(found) if found else None


def address(to: str, *sources: dict[str, Any] | None) -> str:
    """Where to send to `to`: the form the number last wrote from, as the first source that tells when
    it wrote (the reply's context, else the stored reference) has it, if that is the same number; else
    `to`. WhatsApp may know a phone only by that form (bot/core/identity.py)."""
    for source in sources:
        if source and parse.WINDOW_OPENED in source:
            written = source.get(parse.ADDRESS)
            return written if isinstance(written, str) and _stored_as(written) == to else to
    return to


def _stored_as(number: str) -> str | None:
    try:
        return normalize_identity(number)
    except IdentityError:
        return None


def template_variables(reply: Reply) -> dict[str, str]:
    """The template's {{1}} (what it is about) and {{2}} (what it says), as WhatsApp takes parameters:
    one line each, no tabs or runs of spaces, never empty."""
    lines = [" ".join(line.split()) for line in render.render(reply).splitlines()]
    lines = [line for line in lines if line]
    title = " ".join((reply.title or (lines[0] if lines else "cda-bot")).split()).strip("*")
    rest = [line for line in lines if line.strip("*") != title]
    body = " · ".join(rest) or title
    if len(body) > MAX_TEMPLATE_TEXT:
        body = body[: MAX_TEMPLATE_TEXT - 1].rstrip() + "…"
    return {"1": title[:MAX_TEMPLATE_TITLE], "2": body}


class WhatsAppAdapter:
    platform = PLATFORM
    intake_paths = (ROUTE,)  # refused at the door past capacity

    def __init__(self, config: WhatsAppConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        # In the program's three languages: without the database the sender's is not known.
        self.not_saved = not_saved()
        # Past capacity too, the words a 503 would never bring the sender (Twilio does not send the
        # message again).
        self.refusal = twiml(self.not_saved)
        self.messages_per_second = config.messages_per_second  # the hub spaces sends by it
        self.validator = RequestValidator(config.auth_token)
        self.http: TwilioHttp | None = None
        self.client: Client | None = None

    def describe(self) -> str:
        return self.config.describe()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(ROUTE, self._messages, methods=["POST"]),
            Route(STATUS_ROUTE, self._status, methods=["POST"]),
        ]

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._client()  # the aiohttp session must be made on the running loop

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        self.http, self.client = None, None

    def _client(self) -> Client:
        if self.client is None:
            self.http = TwilioHttp(self.config.api_base_url)
            self.client = Client(self.config.account_sid, self.config.auth_token, http_client=self.http)
        return self.client

    # -- in ---------------------------------------------------------------------------------------------
    async def _signed_form(self, request: Request) -> parse.Form | Response:
        """The form, if Twilio signed it; else the refusal to answer with."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            log.warning("twilio request without a signature", extra={"path": request.url.path})
            return refusal(403, "missing signature")
        try:
            body = await read_body(request, MAX_BODY_BYTES, BODY_TIMEOUT_SECONDS)
        except BodyError as error:
            if error.disconnected:
                log.info("twilio client went away before its body arrived")
            return JSONResponse(
                {"error": error.error}, status_code=error.status, headers={"Connection": "close"}
            )
        try:
            form = parse.read_form(body)
        except PayloadError:
            return refusal(403, "bad signature")  # nothing Twilio signs looks like this
        url = parse.signed_url(self.config.public_base_url, request.url.path, request.url.query)
        if not self.validator.validate(url, form, signature):
            log.warning("twilio signature refused", extra={"path": request.url.path})
            return refusal(403, "bad signature")
        return form

    async def _messages(self, request: Request) -> Response:
        found = await self._signed_form(request)
        if isinstance(found, Response):
            return found
        try:
            message = parse.incoming(found)
        except PayloadError as error:
            return refusal(400, str(error))
        if message is None:
            return twiml()  # an SMS to the same number, say: not ours to answer
        to = found.get("To", "").strip()
        if to and to != self.config.sender:
            # Signed by this account, for another of its numbers whose webhook names this server (a
            # staging number sharing the URL, say): not a message to this bot, whose answer would come
            # from another number than the one written to.
            log.warning("whatsapp message to another number ignored", extra={"to": to})
            return twiml()
        try:
            # Whether the number may talk, and what to say to a photo, is the core's to decide.
            await self.hub.accept(message.inbound(self.hub.clock.now()))
        except PayloadError as error:
            return refusal(400, str(error))
        except Undecided as undecided:
            # It may yet be stored (and then answered): the sender must not be told nothing was saved yet.
            # Should the write fail, Twilio does not send the message again after a 503: they are told.
            sender = message.address
            self.hub.tell_if_not_stored(undecided, lambda: self._create(to=sender, body=self.not_saved))
            return refusal(503, "still being stored", undecided.retry_after)
        except Unavailable:
            return self.refusal
        return twiml()

    async def _status(self, request: Request) -> Response:
        found = await self._signed_form(request)
        if isinstance(found, Response):
            return found
        try:
            update = parse.status(found)
        except PayloadError as error:
            return refusal(400, str(error))
        delivery = update.delivery
        if delivery is None:
            return Response(status_code=204)  # queued, sending…: nothing the outbox keeps
        failed = delivery in ("failed", "undelivered")
        level = logging.WARNING if failed else logging.INFO
        log.log(
            level,
            "whatsapp delivery status",
            extra={"sid": update.sid, "status": update.status, "error_code": update.error_code},
        )
        error = reported_error(update.code) if failed else None
        try:
            await self.hub.report_delivery(PLATFORM, update.sid, delivery, update.error_code, error)
        except Unavailable as unavailable:
            return refusal(503, "temporarily unavailable", unavailable.retry_after)
        return Response(status_code=204)

    # -- out --------------------------------------------------------------------------------------------
    async def send(
        self,
        recipient: str,
        reply: Reply,
        reference: dict[str, Any] | None,
        context: dict[str, Any] | None = None,
        sent: Sequence[str] = (),
    ) -> list[str]:
        """Post `reply` to `recipient` (whatsapp:+E164, at the form it last wrote from: `address`): as
        free text in as many messages as its length needs while the number's 24-hour window is open,
        else as the approved template in the reply's language. The SIDs Twilio gave what went out, in
        order. `sent`: the SIDs of the parts an earlier attempt posted before it failed; the rest
        follow them."""
        try:
            to = normalize_identity(recipient)
        except IdentityError:
            raise DeliveryError(f"whatsapp: {recipient!r} is no WhatsApp number", permanent=True) from None
        if not to.startswith(f"{PLATFORM}:"):
            raise DeliveryError(f"whatsapp: {recipient!r} is no WhatsApp number", permanent=True)
        to = address(to, context, reference)
        opened = window_opened(context, reference)
        if opened is None or self.hub.clock.now() - opened >= WINDOW:
            return [await self._template(to, reply, opened)]
        # A countdown in the text may read a little differently by a retry: the parts that went out
        # are counted, not compared.
        pieces = render.parts(render.render(reply))
        sids = list(sent)
        for index in range(len(sids), len(pieces)):
            try:
                sids.append(await self._create(to=to, body=pieces[index]))
            except DeliveryError as failure:
                if not sids:
                    raise
                raise DeliveryError(str(failure), failure.retry_after, failure.permanent, sent=sids) from None
            log.info("whatsapp message sent", extra={"sid": sids[-1], "part": index + 1, "of": len(pieces)})
        return sids

    async def _template(self, to: str, reply: Reply, opened: datetime | None) -> str:
        """Outside the window WhatsApp takes only a template Meta approved: ours, in the reply's language."""
        sids = self.config.content_sids
        content_sid = sids.get(reply.language) or sids.get("en")
        if content_sid is None:
            since = f"last wrote {opened:%Y-%m-%d %H:%M} UTC" if opened else "has never written"
            raise DeliveryError(
                f"whatsapp: {to} {since}, outside the 24-hour window, and no approved template is set "
                "(TWILIO_CONTENT_SIDS)",
                permanent=True,
            )
        variables = json.dumps(template_variables(reply), ensure_ascii=False)
        sid = await self._create(to=to, content_sid=content_sid, content_variables=variables)
        log.info("whatsapp template sent", extra={"sid": sid, "language": reply.language})
        return sid

    async def _create(self, **message: str) -> str:
        client = self._client()
        callback = f"{self.config.public_base_url}{STATUS_ROUTE}"
        try:
            sent = await client.messages.create_async(
                from_=self.config.sender, status_callback=callback, **message
            )
        except TwilioRestException as error:
            raise delivery_error(error, _retry_after.get()) from None
        except (aiohttp.ClientError, TimeoutError, TwilioException) as error:
            raise DeliveryError(f"whatsapp: Twilio not reached: {type(error).__name__}") from None
        return str(sent.sid)
