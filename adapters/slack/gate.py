"""The door of `POST /slack/events`: a bad or stale signature is 401, a body that is no Slack payload
is 400, both with a short JSON error and before Bolt or any handler sees the request."""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse

MAX_BODY_BYTES = 1_000_000
MAX_AGE_SECONDS = 5 * 60  # Slack's own rule: older requests may be replays


def refusal(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def problem_with(body: bytes, content_type: str) -> str | None:
    """What is wrong with a signed body, None when it is a Slack payload Bolt can read."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    if content_type.startswith("application/json") or text.lstrip().startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError:
            return "body is not valid JSON"
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return "JSON body is not a Slack event (no type)"
        return None
    try:
        form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return "body is not a valid form"
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except ValueError:
            return "form field payload is not valid JSON"
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return "form field payload is not a Slack interaction (no type)"
        return None
    if "ssl_check" in form:
        return None
    if "command" in form:
        missing = [k for k in ("team_id", "user_id", "channel_id") if not form.get(k)]
        return f"slash command without {', '.join(missing)}" if missing else None
    return "form is neither a slash command nor an interaction"


class Gate:
    def __init__(self, signing_secret: str, now: Callable[[], float] = time.time) -> None:
        # Signatures are checked against the real time, whatever clock the bot itself runs on.
        self.secret = signing_secret.encode()
        self.now = now

    def check(self, body: bytes, headers: Mapping[str, str]) -> JSONResponse | None:
        if len(body) > MAX_BODY_BYTES:
            return refusal(413, "body too large")
        if not self._signed(body, headers):
            return refusal(401, "invalid or stale Slack signature")
        problem = problem_with(body, headers.get("content-type", ""))
        return refusal(400, problem) if problem else None

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp.isdigit() or not signature or abs(self.now() - int(timestamp)) > MAX_AGE_SECONDS:
            return False
        # Over the raw bytes, so a body that is not even UTF-8 is refused or judged, never a crash.
        digest = hmac.new(self.secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(f"v0={digest}", signature)
