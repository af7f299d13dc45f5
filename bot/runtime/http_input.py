"""A platform's request body, read without trusting the sender: no more than `limit` bytes are held,
and a body that has not arrived within `timeout` seconds is given up on. For every webhook route
(Slack, Teams, Twilio), before its signature is checked, since the signature covers the body."""

import asyncio
import logging
from contextlib import aclosing

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response


class BodyError(Exception):
    """Why the body was not read, as the HTTP status to answer with and a short error for its JSON.

    `disconnected` marks a client that hung up: nobody will read the answer, and it is nobody's
    fault worth a traceback, so the caller logs it quietly."""

    def __init__(self, status: int, error: str, *, disconnected: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.disconnected = disconnected


TOO_LARGE = "body too large"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, or BodyError: 413 over `limit` bytes, 408 not all there within `timeout`
    seconds, 400 for a Content-Length that is no number or a client that disconnected."""
    declared = request.headers.get("content-length")
    if declared is not None:
        # Only ASCII digits: str.isdigit() also takes "²", which int() refuses.
        if not (declared.isascii() and declared.isdigit()):
            raise BodyError(400, "invalid Content-Length")
        # Refused before a byte is read; the length test keeps int() off a 5,000-digit header.
        digits = declared.lstrip("0")
        if len(digits) > len(str(limit)) or int(digits or "0") > limit:
            raise BodyError(413, TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    try:
        # One deadline for the whole body: a sender trickling a byte a second is as stuck as a silent one.
        async with asyncio.timeout(timeout), aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    # Without a Content-Length (chunked) the size is only known by counting.
                    raise BodyError(413, TOO_LARGE)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, "body not received in time") from None
    except ClientDisconnect:
        raise BodyError(400, "client disconnected", disconnected=True) from None
    return b"".join(chunks)


async def body_or_refusal(
    request: Request, limit: int, timeout: float, log: logging.Logger
) -> bytes | Response:
    """The body, or the JSON refusal to answer with: a client that hung up is logged quietly, and a
    refused connection is closed (half a body may still be on the wire)."""
    try:
        return await read_body(request, limit, timeout)
    except BodyError as error:
        if error.disconnected:
            log.info("client went away before its body arrived")
        else:
            log.warning("body refused", extra={"status": error.status, "reason": error.error})
        return JSONResponse({"error": error.error}, status_code=error.status, headers={"Connection": "close"})
