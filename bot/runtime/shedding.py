"""Past capacity, a platform's message is refused at the door: 503 with `Retry-After`, before its
body is read, its signature checked or Bolt has parsed it. Refusing there costs microseconds, so a
flood of retries cannot take the time the messages already accepted need to be handled, and nothing
waits to be refused after the platform's deadline.

Capacity is two bounds: the messages accepted and not yet handled (the intake's backlog), and the
requests in flight, which bounds how long one can wait behind the others (Slack's deadline is 3 s). A
request is in flight from when its body is in: one whose sender is still sending costs nothing meanwhile,
and if it counted, anyone could fill the bound with a few hundred stalled bodies (Slack's and Twilio's
signatures are over the body, so they are checked once it is in) and have every platform's message
refused until those time out.

A platform that would not send the message again after a 503 has its own refusal instead (WhatsApp:
TwiML telling the sender nothing was saved), so a refused message is never lost without a word."""

import logging
from collections.abc import Callable, Collection, Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.runtime.intake import RETRY_AFTER_SECONDS
from bot.runtime.logs import Tally

log = logging.getLogger("cda_bot.shedding")

MAX_IN_FLIGHT = 200  # about a third of a second of messages at full speed
REFUSAL = JSONResponse(
    {"error": "temporarily unavailable"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
)


class Shedding:
    def __init__(
        self,
        app: ASGIApp,
        paths: Collection[str],
        full: Callable[[], bool],
        limit: int = MAX_IN_FLIGHT,
        refusals: Mapping[str, ASGIApp] | None = None,
    ) -> None:
        """`refusals`: a path's own answer past capacity, instead of REFUSAL."""
        self.app = app
        self.paths = frozenset(paths)
        self.refusals = dict(refusals or {})
        self.full = full
        self.limit = limit
        self.in_flight = 0
        self._refusals = Tally(log, "over capacity, messages refused")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit or self.full():
            self._refusals.count(path=scope["path"], in_flight=self.in_flight)
            await self.refusals.get(scope["path"], REFUSAL)(scope, receive, send)
            return
        counted = False

        async def counting() -> Message:
            nonlocal counted
            message = await receive()
            if not counted and not (message["type"] == "http.request" and message.get("more_body")):
                counted = True
                self.in_flight += 1
            return message

        try:
            await self.app(scope, counting, send)
        finally:
            if counted:
                self.in_flight -= 1
