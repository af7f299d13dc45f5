"""The door of `POST /slack/events`: a bad or stale signature is 401, a body that is no Slack payload
the bot handles is 400, both with a short JSON error and before Bolt or any handler sees the request.

"A payload the bot handles" is judged strictly, by the shapes read later: by Bolt, before any
listener runs (it looks for ids all over a payload, see slack_bolt.request.internals), and by
adapters/slack/parse.py. Whatever passes here can be read by both without an exception."""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from starlette.responses import JSONResponse

from adapters.slack.parse import RESOLVE_ACTION

MAX_BODY_BYTES = 1_000_000
BODY_TIMEOUT_SECONDS = 10.0  # Slack gives up after 3 s; a body still arriving after 10 never will
MAX_AGE_SECONDS = 5 * 60  # Slack's own rule: older requests may be replays
TIMESTAMP_DIGITS = 12  # seconds since 1970 have 10 digits until the year 2286
MAX_DEPTH = 64  # Slack's deepest payloads (rich text in an edited message) nest about 15 deep
MAX_ID = 80  # Slack ids are short ASCII; two of them make an identity, which must stay under 200
COMMAND = "/cda"  # the one slash command the app registers

UNSIGNED = "invalid or stale Slack signature"


def refusal(status: int, error: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # Errors may quote a payload's own keys: short enough to log, whatever was sent.
    return JSONResponse({"error": error[:200]}, status_code=status, headers=headers)


# -- what a field may hold ------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    what: str  # for the error: "event.channel is not <what>"
    test: Callable[[Any], bool]


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and 0 < len(value) <= MAX_ID


def _is_dicts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _or_null(kind: Kind) -> Kind:
    return Kind(f"{kind.what} or null", lambda value: value is None or kind.test(value))


TEXT = Kind("a string", lambda value: isinstance(value, str))
ID = Kind(f"a Slack id (ASCII, 1 to {MAX_ID} characters)", _is_id)
OBJECT = Kind("an object", lambda value: isinstance(value, dict))
OBJECTS = Kind("a list of objects", _is_dicts)
IDS = Kind("a list of Slack ids", lambda value: isinstance(value, list) and all(map(_is_id, value)))
ACTIONS = Kind("a non-empty list of objects", lambda value: _is_dicts(value) and len(value) > 0)
# Bolt takes `team`, `user`, `channel` and `enterprise` as an id or as an object holding one.
OWNER = Kind(
    "a string, an object with a string id, or null",
    lambda value: (
        value is None
        or isinstance(value, str)
        or (isinstance(value, dict) and (value.get("id") is None or isinstance(value["id"], str)))
    ),
)
MAYBE_TEXT, MAYBE_ID, MAYBE_OBJECT, MAYBE_OBJECTS = map(_or_null, (TEXT, ID, OBJECT, OBJECTS))


@dataclass(frozen=True)
class Table:
    """The fields of one object that are read later: `required` ones must be there, `optional` ones
    may be missing, and either, when there, must be of its kind; `absent` ones must not be there."""

    required: Mapping[str, Kind] = field(default_factory=dict)
    optional: Mapping[str, Kind] = field(default_factory=dict)
    absent: Mapping[str, str] = field(default_factory=dict)  # field → why not

    def problem(self, where: str, value: dict[str, Any]) -> str | None:
        for key, kind in self.required.items():
            if key not in value:
                return f"{where}{key} is missing"
            if not kind.test(value[key]):
                return f"{where}{key} is not {kind.what}"
        for key, kind in self.optional.items():
            if key in value and not kind.test(value[key]):
                return f"{where}{key} is not {kind.what}"
        for key, why in self.absent.items():
            if key in value:
                return f"{where}{key} is not expected here ({why})"
        return None


# Bolt builds its context from these before any listener runs, looking in the payload and in the
# objects inside it (its authorizations, the event, the event's message, item, view...), and hands
# the ids to authorization as they are: a number or a list there is a crash, not a refusal. So they
# are checked in every object of a payload, wherever it sits.
ANYWHERE = Table(
    optional={
        **dict.fromkeys(("enterprise", "team", "user", "channel"), OWNER),
        **dict.fromkeys(
            (
                "enterprise_id",
                "team_id",
                "user_id",
                "channel_id",
                "thread_ts",
                "user_team",
                "app_installed_team_id",
                "response_url",
                "function_execution_id",
                "bot_access_token",
            ),
            MAYBE_TEXT,
        ),
        "authorizations": MAYBE_OBJECTS,
    }
)
ANYWHERE_KEYS = frozenset(ANYWHERE.optional)
# The top of every payload, whatever its type.
PAYLOAD = Table(
    required={"type": TEXT},
    # Bolt reads these, whatever the payload's type, without a look at what they hold.
    optional={"event": OBJECT, "response_urls": OBJECTS},
    # Bolt takes any payload with a `command` for a slash command, whatever its type.
    absent={"command": "only slash commands have one"},
)
URL_VERIFICATION = Table(required={"challenge": TEXT})
EVENT_CALLBACK = Table(
    required={"event": OBJECT, "event_id": ID},
    optional={"team_id": MAYBE_ID, "api_app_id": MAYBE_TEXT},
)
EVENT = Table(required={"type": TEXT}, optional={"assistant_thread": MAYBE_OBJECT})
# What parse.from_event reads of the events it answers (and Bolt of a message in a DM thread: its
# channel); other event types are ignored, or read by Bolt's own listeners as below.
SPOKEN = frozenset({"message", "app_mention"})
SPOKEN_EVENT = Table(
    required={"channel": ID},
    optional={
        **dict.fromkeys(("user", "team", "user_team"), MAYBE_ID),
        **dict.fromkeys(("text", "ts", "thread_ts", "channel_type", "subtype", "bot_id"), MAYBE_TEXT),
    },
)
# Bolt deletes the installations of the user ids listed (multi-workspace mode).
TOKENS_REVOKED = Table(optional={"tokens": OBJECT})
TOKENS = Table(optional={"oauth": IDS, "bot": IDS})
# Bolt answers these with its assistant helpers, which need the thread they are about.
ASSISTANT = frozenset({"assistant_thread_started", "assistant_thread_context_changed"})
ASSISTANT_EVENT = Table(required={"assistant_thread": OBJECT})
ASSISTANT_THREAD = Table(required={"channel_id": ID, "thread_ts": TEXT})
BLOCK_ACTIONS = Table(
    required={"actions": ACTIONS, "user": OBJECT, "trigger_id": ID, "response_url": TEXT},
    optional=dict.fromkeys(("team", "channel", "container", "message"), MAYBE_OBJECT),
)
ACTION = Table(required={"action_id": TEXT})
USER = Table(required={"id": ID}, optional={"team_id": MAYBE_ID})
WITH_ID = Table(optional={"id": MAYBE_ID})
CONTAINER = Table(optional={"channel_id": MAYBE_ID, "message_ts": MAYBE_TEXT})
MESSAGE = Table(optional={"ts": MAYBE_TEXT})
# Bolt reads a form's fields as it reads a JSON payload's, and a form's fields are all strings: these
# would be taken for a payload type, an event object or a list of objects.
FORM = Table(
    absent={
        "type": "a form is no typed payload",
        "event": "a form holds no object",
        "authorizations": "a form holds no list",
        "response_urls": "a form holds no list",
    }
)
SLASH_COMMAND = Table(
    required={"team_id": ID, "user_id": ID, "channel_id": ID, "command": TEXT},
    optional={"trigger_id": ID},
)


# -- payloads -------------------------------------------------------------------------------------


def _event_callback(payload: dict[str, Any]) -> str | None:
    problem = EVENT_CALLBACK.problem("", payload) or EVENT.problem("event.", payload["event"])
    if problem:
        return problem
    event = payload["event"]
    if event["type"] in SPOKEN:
        return SPOKEN_EVENT.problem("event.", event)
    if event["type"] == "tokens_revoked":
        return TOKENS_REVOKED.problem("event.", event) or TOKENS.problem(
            "event.tokens.", event.get("tokens", {})
        )
    if event["type"] in ASSISTANT:
        return ASSISTANT_EVENT.problem("event.", event) or ASSISTANT_THREAD.problem(
            "event.assistant_thread.", event["assistant_thread"]
        )
    return None


def _url_verification(payload: dict[str, Any]) -> str | None:
    return URL_VERIFICATION.problem("", payload)


def _block_actions(payload: dict[str, Any]) -> str | None:
    problem = (
        BLOCK_ACTIONS.problem("", payload)
        or _each("actions", payload["actions"], ACTION)
        or USER.problem("user.", payload["user"])
        or WITH_ID.problem("team.", payload.get("team") or {})
        or WITH_ID.problem("channel.", payload.get("channel") or {})
        or CONTAINER.problem("container.", payload.get("container") or {})
        or MESSAGE.problem("message.", payload.get("message") or {})
    )
    if problem:
        return problem
    # Bolt matches its listeners on the first action only.
    if not payload["actions"][0]["action_id"].startswith(RESOLVE_ACTION):
        return "action is not handled"
    return None


def _each(where: str, items: list[dict[str, Any]], table: Table) -> str | None:
    return next((p for i, item in enumerate(items) if (p := table.problem(f"{where}[{i}].", item))), None)


# The payload types the bot handles: as a JSON body, and as the `payload` field of a form.
EVENTS_API: Mapping[str, Callable[[dict[str, Any]], str | None]] = {
    "url_verification": _url_verification,
    "event_callback": _event_callback,
}
INTERACTIONS: Mapping[str, Callable[[dict[str, Any]], str | None]] = {"block_actions": _block_actions}


def _nesting_or_ids(payload: dict[str, Any]) -> str | None:
    """Too deep a payload, or an id Bolt would choke on, anywhere in it. Level by level, holding
    nothing but the objects themselves: a large payload is walked in tens of milliseconds."""
    level: list[Any] = [payload]
    for _ in range(MAX_DEPTH):
        below: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                # Most objects hold none of the fields: one set operation tells, before any closer look.
                if not ANYWHERE_KEYS.isdisjoint(value) and ANYWHERE.problem("", value):
                    return ANYWHERE.problem(_where(payload, value), value)
                value = value.values()
            for item in value:
                if isinstance(item, (dict, list)):
                    below.append(item)
        if not below:
            return None
        level = below
    return "JSON nested too deeply"


# A place in a payload as (parent, key) pairs: pushing one costs the same at any depth, where copying a
# path string into every object would not.
Trail = tuple["Trail", str | int] | None


def _where(payload: dict[str, Any], target: dict[str, Any]) -> str:
    """Where `target` sits in the payload, spelled for an error ("event.blocks[0].")."""
    stack: list[tuple[Any, Trail]] = [(payload, None)]
    while stack:
        value, trail = stack.pop()
        if value is target:
            return _spelled(trail)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((item, (trail, key)) for key, item in items if isinstance(item, (dict, list)))
    return ""


def _spelled(trail: Trail) -> str:
    keys: list[str] = []
    while trail is not None:
        trail, key = trail
        keys.append(f"[{key}]" if isinstance(key, int) else f".{key[:40]}")
    return "".join(reversed(keys)).lstrip(".") + "." if keys else ""


def _payload_problem(text: str, handled: Mapping[str, Callable[[dict[str, Any]], str | None]]) -> str | None:
    try:
        payload = json.loads(text)
    except ValueError:
        return "not valid JSON"
    except RecursionError:  # json's C parser gives up on nesting thousands deep
        return "JSON nested too deeply"
    if not isinstance(payload, dict):
        return "JSON is not an object"
    problem = PAYLOAD.problem("", payload) or _nesting_or_ids(payload)
    if problem:
        return problem
    check = handled.get(payload["type"])
    if check is None:
        return f"payload type {payload['type'][:40]!r} is not handled"
    return check(payload)


def _form_problem(text: str) -> str | None:
    try:
        form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return "body is not a valid form"
    if "payload" in form:
        problem = _payload_problem(form["payload"], INTERACTIONS)
        return f"form field payload: {problem}" if problem else None
    problem = FORM.problem("", form)
    if problem:
        return problem
    if form.get("ssl_check") == "1":  # Bolt answers Slack's certificate check itself
        return None
    if "command" not in form:
        return "form is neither a slash command nor an interaction"
    problem = SLASH_COMMAND.problem("", form)
    if problem:
        return f"slash command: {problem}"
    if form["command"] != COMMAND:
        return "slash command is not handled"
    return None


def reads_as_json(text: str, content_type: str) -> bool:
    """Bolt's own choice between JSON and a form (slack_bolt.request.internals.parse_body): the gate
    must judge the body as Bolt will read it, and Bolt ignores the media type's parameters."""
    return content_type.split(";")[0] == "application/json" or text.startswith("{")


def problem_with(body: bytes, content_type: str) -> str | None:
    """What is wrong with a signed body, None when it is a Slack payload the bot handles."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    if reads_as_json(text, content_type):
        return _payload_problem(text, EVENTS_API)
    return _form_problem(text)


# -- the gate -------------------------------------------------------------------------------------


def _single(headers: Mapping[str, str], name: str) -> str | None:
    """The header's one value; None when it is missing or repeated. Bolt reads the last of repeated
    headers and this gate the first: they must never disagree on what was signed or sent."""
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        values = getlist(name)
        return values[0] if len(values) == 1 else None
    return headers.get(name)


class Gate:
    def __init__(self, signing_secret: str, now: Callable[[], float] = time.time) -> None:
        # Signatures are checked against the real time, whatever clock the bot itself runs on.
        self.secret = signing_secret.encode()
        self.now = now

    def check_headers(self, headers: Mapping[str, str]) -> JSONResponse | None:
        """401 for a request that cannot be signed (no, repeated, malformed or stale signature headers),
        before its body is read at all."""
        return None if self._headers(headers) is not None else refusal(401, UNSIGNED)

    def check(self, body: bytes, headers: Mapping[str, str]) -> JSONResponse | None:
        if len(body) > MAX_BODY_BYTES:
            return refusal(413, "body too large")
        if not self._signed(body, headers):
            return refusal(401, UNSIGNED)
        content_type = _single(headers, "content-type")
        if content_type is None and "content-type" in headers:
            return refusal(400, "more than one Content-Type")
        problem = problem_with(body, content_type or "")
        return refusal(400, problem) if problem else None

    def _headers(self, headers: Mapping[str, str]) -> tuple[str, str] | None:
        """The timestamp and signature, when they look like Slack's and the timestamp is recent."""
        timestamp = _single(headers, "x-slack-request-timestamp")
        signature = _single(headers, "x-slack-signature")
        if timestamp is None or signature is None or not signature.isascii():
            return None
        # Only ASCII digits, and few: str.isdigit() also takes "²", and int() refuses huge numbers.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= TIMESTAMP_DIGITS):
            return None
        if abs(self.now() - int(timestamp)) > MAX_AGE_SECONDS:
            return None
        return timestamp, signature

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        found = self._headers(headers)
        if found is None:
            return False
        timestamp, signature = found
        # Over the raw bytes, so a body that is not even UTF-8 is refused or judged, never a crash.
        digest = hmac.new(self.secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(f"v0={digest}".encode(), signature.encode("ascii"))


def bolt_request(body: bytes, headers: Mapping[str, str], query: Any = None) -> AsyncBoltRequest:
    """A body the gate let through, as Bolt's Starlette handler would hand it to Bolt, but read right.

    Bolt takes any form whose text mentions "payload" for an interaction and, finding no such field,
    reads it as nothing (slack_bolt.request.internals.parse_body): `/cda update fixed the payload
    parser` would reach no listener. Such a form gets its own fields instead; the raw text, which
    Bolt checks the signature over, is left as it came."""
    text = body.decode("utf-8")
    request = AsyncBoltRequest(body=text, query=query, headers=headers)  # type: ignore[arg-type]
    if request.body == {} and not reads_as_json(text, request.content_type or ""):
        fields = dict(parse_qsl(text, keep_blank_values=True))
        if fields and "payload" not in fields:
            request.body = fields
            request.context = build_async_context(AsyncBoltContext(), fields)
    return request
