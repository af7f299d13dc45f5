"""The door of `POST /slack/events` on its own: the signature check, the body reader, and the
structural check of what is signed, with fixed vectors and with generated bodies (hypothesis).

The promise tested: a request is refused (401 unsigned, 413 too large, 400 malformed) or let through,
never an exception; and whatever is let through, Bolt and adapters/slack/parse.py read without one."""

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from adapters.slack import parse
from adapters.slack.gate import COMMAND, MAX_BODY_BYTES, Gate, bolt_request, problem_with, reads_as_json
from bot.runtime.http_input import BodyError, read_body
from tests.slack_harness import serving

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_800_000_000  # the gate's clock in the unit tests
RECEIVED = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

gate = Gate(SECRET, now=lambda: NOW)


def signed(
    body: bytes, content_type: str = JSON, timestamp: str | int = NOW, secret: str = SECRET
) -> dict[str, str]:
    """Slack's headers, as a plain mapping: `Headers(signed(...))` is how the server hands them over."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": str(timestamp),
        "x-slack-signature": f"v0={digest}",
    }


def status(refused: JSONResponse | None) -> int | None:
    return None if refused is None else refused.status_code


def error_of(refused: JSONResponse | None) -> str:
    assert refused is not None
    answer = json.loads(bytes(refused.body))
    assert set(answer) == {"error"} and isinstance(answer["error"], str) and len(answer["error"]) <= 200
    return answer["error"]


# -- bodies as Slack sends them -------------------------------------------------------------------


def event_callback(event: Any) -> dict[str, Any]:
    return {
        "token": "unused",
        "team_id": "T0001",
        "api_app_id": "A0001",
        "event": event,
        "type": "event_callback",
        "event_id": "Ev0001",
        "event_time": NOW,
        "authorizations": [{"enterprise_id": None, "team_id": "T0001", "user_id": "UBOT", "is_bot": True}],
        "is_ext_shared_channel": False,
    }


MESSAGE = {
    "type": "message",
    "channel": "C0001",
    "channel_type": "channel",
    "user": "UMEMBER1",
    "text": "update: mapped 40 bus stops",
    "ts": "1700000000.000100",
    "event_ts": "1700000000.000100",
    "blocks": [
        {
            "type": "rich_text",
            "block_id": "b1",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [{"type": "text", "text": "update: ", "style": {"bold": True}}],
                }
            ],
        }
    ],
}
DIRECT = {**MESSAGE, "channel": "D0001", "channel_type": "im"}
ASSISTANT_STARTED = {
    "type": "assistant_thread_started",
    "assistant_thread": {
        "user_id": "U1",
        "context": {},
        "channel_id": "D0001",
        "thread_ts": "1729999327.187299",
    },
    "event_ts": "1715873754.429808",
}
TOKENS_REVOKED = {"type": "tokens_revoked", "tokens": {"oauth": ["U1"], "bot": ["UBOT"]}}
BLOCK_ACTIONS = {
    "type": "block_actions",
    "team": {"id": "T0001", "domain": "test"},
    "user": {"id": "UCOACH1", "team_id": "T0001", "username": "coach"},
    "api_app_id": "A0001",
    "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    "container": {"type": "message", "message_ts": "6.1", "channel_id": "D0COACH", "is_ephemeral": False},
    "channel": {"id": "D0COACH", "name": "directmessage"},
    "message": {"ts": "6.1", "text": "Blocker #3", "user": "UBOT"},
    "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
    "actions": [
        {
            "type": "button",
            "action_id": "resolve_blocker:3",
            "block_id": "b1",
            "value": "3",
            "text": {"type": "plain_text", "text": "Resolve"},
            "action_ts": "6.2",
        }
    ],
    "enterprise": None,
    "is_enterprise_install": False,
}
SLASH_COMMAND = {
    "token": "unused",
    "team_id": "T0001",
    "team_domain": "test",
    "channel_id": "C0001",
    "channel_name": "alpha-team",
    "user_id": "UMEMBER1",
    "user_name": "sam",
    "command": "/cda",
    "text": "status",
    "api_app_id": "A0001",
    "is_enterprise_install": "false",
    "response_url": "https://hooks.slack.com/commands/T0001/1/abc",
    "trigger_id": "13345224609.738474920.8088930838d88f008e0",
}


def json_body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def interaction(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


NO_RESPONSE_URL = {k: v for k, v in SLASH_COMMAND.items() if k != "response_url"}
GOOD: list[tuple[str, bytes, str]] = [
    ("message", json_body(event_callback(MESSAGE)), JSON),
    ("mention", json_body(event_callback({**MESSAGE, "type": "app_mention", "text": "<@UBOT> hi"})), JSON),
    ("thread reply", json_body(event_callback({**MESSAGE, "thread_ts": "1699999999.000001"})), JSON),
    (
        "edited",
        json_body(event_callback({**MESSAGE, "subtype": "message_changed", "message": MESSAGE})),
        JSON,
    ),
    ("json with charset", json_body(event_callback(MESSAGE)), "application/json; charset=utf-8"),
    ("json sent as a form", json_body(event_callback(MESSAGE)), FORM),
    (
        "url verification",
        json_body({"token": "x", "challenge": "3eZbrw1aBm", "type": "url_verification"}),
        JSON,
    ),
    (
        "tokens revoked",
        json_body(event_callback(TOKENS_REVOKED)),
        JSON,
    ),
    ("app uninstalled", json_body(event_callback({"type": "app_uninstalled"})), JSON),
    (
        "member joined",
        json_body(
            event_callback(
                {
                    "type": "member_joined_channel",
                    "user": "U1",
                    "channel": "C1",
                    "team": "T0001",
                    "inviter": "U2",
                }
            )
        ),
        JSON,
    ),
    (
        "channel created",
        json_body(event_callback({"type": "channel_created", "channel": {"id": "C9"}})),
        JSON,
    ),
    ("DM in a thread", json_body(event_callback({**DIRECT, "thread_ts": "1.0"})), JSON),
    ("assistant thread", json_body(event_callback(ASSISTANT_STARTED)), JSON),
    (
        "reaction",
        json_body(event_callback({"type": "reaction_added", "user": "U1", "reaction": "tada"})),
        JSON,
    ),
    ("button", interaction(BLOCK_ACTIONS), FORM),
    ("button, org-wide install", interaction({**BLOCK_ACTIONS, "team": None}), FORM),
    ("slash command", form(SLASH_COMMAND), FORM),
    ("slash command, no text", form({**SLASH_COMMAND, "text": ""}), FORM),
    ("ssl check", form({"ssl_check": "1", "token": "unused"}), FORM),
]


@pytest.mark.parametrize(("body", "content_type"), [(b, c) for _, b, c in GOOD], ids=[n for n, _, _ in GOOD])
def test_what_slack_sends_passes(body: bytes, content_type: str) -> None:
    assert problem_with(body, content_type) is None
    assert gate.check(body, Headers(signed(body, content_type))) is None


def _nested(depth: int) -> bytes:
    return b'{"type": "event_callback", "event_id": "Ev1", "event": ' + b"[" * depth + b"]" * depth + b"}"


BAD: list[tuple[str, bytes, str]] = [
    ("event null", json_body(event_callback(None)), JSON),
    ("event a list", json_body(event_callback([MESSAGE])), JSON),
    ("event a string", json_body(event_callback("message")), JSON),
    ("no event", json_body({k: v for k, v in event_callback(MESSAGE).items() if k != "event"}), JSON),
    (
        "event without type",
        json_body(event_callback({k: v for k, v in MESSAGE.items() if k != "type"})),
        JSON,
    ),
    ("event type a number", json_body(event_callback({**MESSAGE, "type": 7})), JSON),
    ("no event_id", json_body({k: v for k, v in event_callback(MESSAGE).items() if k != "event_id"}), JSON),
    ("channel a number", json_body(event_callback({**MESSAGE, "channel": 42})), JSON),
    ("user an object", json_body(event_callback({**MESSAGE, "user": {"id": "U1"}})), JSON),
    ("text a number", json_body(event_callback({**MESSAGE, "text": 5})), JSON),
    (
        "message without channel",
        json_body(event_callback({k: v for k, v in DIRECT.items() if k != "channel"})),
        JSON,
    ),
    ("assistant_thread a string", json_body(event_callback({**DIRECT, "assistant_thread": "D1"})), JSON),
    (
        "assistant event without its thread",
        json_body(event_callback({"type": "assistant_thread_started"})),
        JSON,
    ),
    (
        "assistant thread without thread_ts",
        json_body(event_callback({**ASSISTANT_STARTED, "assistant_thread": {"channel_id": "D1"}})),
        JSON,
    ),
    ("tokens null", json_body(event_callback({"type": "tokens_revoked", "tokens": None})), JSON),
    ("tokens a list", json_body(event_callback({"type": "tokens_revoked", "tokens": ["U1"]})), JSON),
    (
        "revoked users a string",
        json_body(event_callback({"type": "tokens_revoked", "tokens": {"oauth": "U1"}})),
        JSON,
    ),
    ("block actions with an event", interaction({**BLOCK_ACTIONS, "event": None}), FORM),
    ("slash command with an event", form({**SLASH_COMMAND, "event": ""}), FORM),
    ("user id too long", json_body(event_callback({**MESSAGE, "user": "U" * 300})), JSON),
    ("channel not ASCII", json_body(event_callback({**MESSAGE, "channel": "Cß"})), JSON),
    ("authorizations a string", json_body({**event_callback(MESSAGE), "authorizations": "T0001"}), JSON),
    ("authorizations of strings", json_body({**event_callback(MESSAGE), "authorizations": ["T0001"]}), JSON),
    ("team_id a number", json_body({**event_callback(MESSAGE), "team_id": 1}), JSON),
    ("team a number, deep inside", json_body(event_callback({**MESSAGE, "item": {"team": 3}})), JSON),
    ("a command key in an event", json_body({**event_callback(MESSAGE), "command": "/cda"}), JSON),
    ("response_urls a string", json_body({**event_callback(MESSAGE), "response_urls": "x"}), JSON),
    ("nested 100 deep", _nested(100), JSON),
    ("nested 100,000 deep", _nested(100_000), JSON),
    ("challenge missing", json_body({"type": "url_verification"}), JSON),
    ("challenge a number", json_body({"type": "url_verification", "challenge": 5}), JSON),
    ("no type", json_body({"event": MESSAGE}), JSON),
    ("type a list", json_body({"type": ["event_callback"]}), JSON),
    ("a JSON list", b"[1, 2, 3]", JSON),
    ("a JSON string", b'"event_callback"', JSON),
    ("broken JSON", b'{"type": "event_callback", ', JSON),
    ("huge number", b'{"type": "event_callback", "x": ' + b"9" * 5000 + b"}", JSON),
    ("app rate limited", json_body({"type": "app_rate_limited", "team_id": "T1"}), JSON),
    ("block actions as JSON", json_body(BLOCK_ACTIONS), JSON),
    ("view submission", interaction({"type": "view_submission", "user": {"id": "U1"}, "view": {}}), FORM),
    ("shortcut", interaction({"type": "shortcut", "callback_id": "x", "user": {"id": "U1"}}), FORM),
    ("actions a string", interaction({**BLOCK_ACTIONS, "actions": "resolve_blocker"}), FORM),
    ("actions empty", interaction({**BLOCK_ACTIONS, "actions": []}), FORM),
    ("action without action_id", interaction({**BLOCK_ACTIONS, "actions": [{"value": "3"}]}), FORM),
    ("action_id a number", interaction({**BLOCK_ACTIONS, "actions": [{"action_id": 3}]}), FORM),
    ("another action", interaction({**BLOCK_ACTIONS, "actions": [{"action_id": "approve"}]}), FORM),
    ("user missing", interaction({k: v for k, v in BLOCK_ACTIONS.items() if k != "user"}), FORM),
    ("user a string", interaction({**BLOCK_ACTIONS, "user": "UCOACH1"}), FORM),
    ("team a string id", interaction({**BLOCK_ACTIONS, "team": {"id": 7}}), FORM),
    ("team a string", interaction({**BLOCK_ACTIONS, "team": "T0001"}), FORM),
    ("channel a number", interaction({**BLOCK_ACTIONS, "channel": 5}), FORM),
    ("container a list", interaction({**BLOCK_ACTIONS, "container": []}), FORM),
    ("message_ts a number", interaction({**BLOCK_ACTIONS, "container": {"message_ts": 6.1}}), FORM),
    ("no trigger_id", interaction({k: v for k, v in BLOCK_ACTIONS.items() if k != "trigger_id"}), FORM),
    ("no response_url", interaction({k: v for k, v in BLOCK_ACTIONS.items() if k != "response_url"}), FORM),
    ("payload a list", interaction([BLOCK_ACTIONS]), FORM),
    ("payload not JSON", b"payload=%7Bnot-json", FORM),
    ("slash command without ids", b"command=%2Fcda&text=status", FORM),
    ("another command", form({**SLASH_COMMAND, "command": "/other"}), FORM),
    ("slash command with a type", form({**SLASH_COMMAND, "type": "block_actions", "actions": "x"}), FORM),
    ("form authorizations", form({**SLASH_COMMAND, "authorizations": "x"}), FORM),
    ("form response_urls", form({**NO_RESPONSE_URL, "response_urls": "x"}), FORM),
    ("slash command, trigger_id too long", form({**SLASH_COMMAND, "trigger_id": "1" * 300}), FORM),
    ("just words", b"just some words", FORM),
    ("empty", b"", FORM),
    ("not UTF-8", b"\xff\xfe", FORM),
    ("not UTF-8 JSON", b'{"type": "\xff"}', JSON),
]


@pytest.mark.parametrize(("body", "content_type"), [(b, c) for _, b, c in BAD], ids=[n for n, _, _ in BAD])
def test_malformed_signed_bodies_get_400_with_a_short_error(body: bytes, content_type: str) -> None:
    refused = gate.check(body, Headers(signed(body, content_type)))
    assert status(refused) == 400
    error_of(refused)


def test_the_error_names_the_field() -> None:
    body = json_body(event_callback({**MESSAGE, "blocks": [{"elements": [{"channel": 5}]}]}))
    assert error_of(gate.check(body, signed(body))).startswith("event.blocks[0].elements[0].channel is not")
    body = interaction({**BLOCK_ACTIONS, "actions": "x"})
    assert error_of(gate.check(body, signed(body, FORM))) == (
        "form field payload: actions is not a non-empty list of objects"
    )


# -- the signature --------------------------------------------------------------------------------

BODY = json_body(event_callback(MESSAGE))


def _with(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **{k.replace("_", "-"): v for k, v in changes.items()}}


@pytest.mark.parametrize(
    "headers",
    [
        signed(BODY, secret="not-the-secret"),
        signed(BODY, timestamp=NOW - 5 * 60 - 1),
        signed(BODY, timestamp=NOW + 5 * 60 + 1),
        signed(BODY, timestamp="²"),
        signed(BODY, timestamp="1" * 5000),
        signed(BODY, timestamp="١٨٠٠٠٠٠٠٠٠"),  # Arabic-Indic digits: int() takes them
        signed(BODY, timestamp=f"000{NOW}"),  # the right number, too many digits
        signed(BODY, timestamp=f"+{NOW}"),
        signed(BODY, timestamp=f" {NOW}"),
        _with(signed(BODY), x_slack_signature=signed(BODY)["x-slack-signature"].upper()),
        _with(signed(BODY), x_slack_signature=signed(BODY)["x-slack-signature"] + " "),
        _with(signed(BODY), x_slack_signature="v0=é"),
        _with(signed(BODY), x_slack_signature=""),
        _with(signed(BODY), x_slack_request_timestamp=""),
        {"content-type": JSON},
        {},
    ],
    ids=lambda h: repr(h)[:60],
)
def test_a_bad_or_stale_signature_is_401(headers: dict[str, str]) -> None:
    refused = gate.check(BODY, headers)
    assert status(refused) == 401
    assert error_of(refused) == "invalid or stale Slack signature"
    if all(v.isascii() or v == "²" for v in headers.values()):  # what can come over HTTP at all
        assert status(gate.check(BODY, Headers(headers))) == 401


def test_the_signature_is_over_the_exact_bytes() -> None:
    headers = signed(BODY)
    assert gate.check(BODY, headers) is None
    for changed in (BODY + b" ", b" " + BODY, BODY.replace(b"bus", b"bUs"), BODY[:-1]):
        assert status(gate.check(changed, headers)) == 401
    assert gate.check(BODY, signed(BODY, timestamp=NOW - 5 * 60)) is None  # the edge is still fresh


def test_repeated_signature_or_content_type_headers_are_refused() -> None:
    # Bolt reads the last of repeated headers, the gate the first: no guessing which was meant.
    raw = [(k.encode(), v.encode()) for k, v in signed(BODY).items()]
    assert gate.check(BODY, Headers(raw=raw)) is None
    assert status(gate.check(BODY, Headers(raw=[*raw, (b"x-slack-request-timestamp", b"\xb2")]))) == 401
    assert status(gate.check(BODY, Headers(raw=[*raw, (b"x-slack-signature", b"v0=00")]))) == 401
    assert status(gate.check(BODY, Headers(raw=[*raw, (b"content-type", FORM.encode())]))) == 400


def test_non_utf8_bodies_are_judged_signed_or_not() -> None:
    body = b"payload=\xff\xfe"
    assert status(gate.check(body, signed(body, FORM))) == 400
    assert status(gate.check(body, {"content-type": FORM})) == 401


def test_too_large_is_413_before_the_signature() -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    assert status(gate.check(body, {})) == 413
    assert status(gate.check(body, signed(body))) == 413


def test_headers_alone_refuse_what_cannot_be_signed() -> None:
    assert gate.check_headers(signed(BODY)) is None
    assert status(gate.check_headers({})) == 401
    assert status(gate.check_headers(signed(BODY, timestamp="²"))) == 401
    assert status(gate.check_headers(signed(BODY, timestamp=NOW - 3600))) == 401


# -- generated bodies -----------------------------------------------------------------------------

KEYS = [
    "type",
    "event",
    "event_id",
    "team_id",
    "team",
    "user",
    "user_id",
    "user_team",
    "channel",
    "channel_id",
    "channel_type",
    "text",
    "ts",
    "thread_ts",
    "subtype",
    "bot_id",
    "enterprise",
    "enterprise_id",
    "authorizations",
    "actions",
    "action_id",
    "value",
    "id",
    "container",
    "message",
    "message_ts",
    "trigger_id",
    "response_url",
    "response_urls",
    "challenge",
    "command",
    "view",
    "item",
    "is_ext_shared_channel",
    "payload",
    "ssl_check",
    "assistant_thread",
    "tokens",
    "oauth",
    "bot",
    "previous_message",
    "function_data",
    "function_execution_id",
    "bot_access_token",
    "callback_id",
    "is_enterprise_install",
    "app_installed_team_id",
    "context_team_id",
]
WORDS = [
    "",
    "message",
    "app_mention",
    "event_callback",
    "url_verification",
    "block_actions",
    "view_submission",
    "shortcut",
    "tokens_revoked",
    "app_uninstalled",
    "assistant_thread_started",
    "assistant_thread_context_changed",
    "thread_broadcast",
    "bot_message",
    "im",
    "/cda",
    "resolve_blocker",
    "resolve_blocker:1",
    "T0001",
    "UBOT",
    "U1",
    "C1",
    "D1",
    "E1",
    "1",
    "1.5",
    "<@UBOT> update: x",
    "²",
    "ß" * 70,
    "x" * 300,
]
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(WORDS)
    | st.text(max_size=10)
)
keys = st.sampled_from(KEYS) | st.text(max_size=6)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def _containers(value: Any) -> Iterator[dict[str, Any] | list[Any]]:
    if isinstance(value, dict | list):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers(item)


# What breaks readers most often, offered more often than chance would.
NASTY = [
    None,
    True,
    0,
    5,
    1.5,
    "",
    "x" * 300,
    "ß" * 70,
    "²",
    [],
    {},
    ["U1"],
    [{}],
    [None],
    {"id": 5},
    {"id": "T1"},
]
replacements = st.sampled_from(NASTY).map(copy.deepcopy) | values  # copies: mutations change them


@st.composite
def mutated(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """A good payload with a few fields (mostly one) set to anything, added or taken away, at any depth."""
    payload = copy.deepcopy(original)
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        target = draw(st.sampled_from(list(_containers(payload))))
        if isinstance(target, list):
            if target:
                target[draw(st.integers(0, len(target) - 1))] = draw(replacements)
            continue
        # Mostly a field that is there: that is where a reader looks.
        key = draw(st.sampled_from(sorted(target))) if target and draw(st.integers(0, 2)) else draw(keys)
        if key in target and not draw(st.integers(0, 3)):
            del target[key]
        else:
            target[key] = draw(replacements)
    return payload


@st.composite
def mutated_form(draw: st.DrawFn, original: dict[str, str]) -> dict[str, str]:
    fields = dict(original)
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        key = draw(st.sampled_from(sorted(fields))) if draw(st.integers(0, 2)) else draw(keys)
        if key in fields and not draw(st.integers(0, 3)):
            del fields[key]
        else:
            fields[key] = draw(st.sampled_from(WORDS) | st.text(max_size=12))
    return fields


def _top(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(keys, values, max_size=6).map(lambda d: {**d, "type": kind})


json_payloads = (
    mutated(event_callback(MESSAGE))
    | mutated(event_callback({**MESSAGE, "type": "app_mention"}))
    | mutated(event_callback({**DIRECT, "thread_ts": "1.0"}))
    | mutated(event_callback({"type": "member_joined_channel", "user": "U1", "channel": "C1"}))
    | mutated(event_callback(ASSISTANT_STARTED))
    | mutated(event_callback(TOKENS_REVOKED))
    | mutated({"type": "url_verification", "challenge": "abc"})
    | _top("event_callback")
    | st.dictionaries(keys, values, max_size=6)
    | values
)
# (body, content type)
bodies = st.one_of(
    json_payloads.map(lambda p: (json_body(p), JSON)),
    st.one_of(mutated(BLOCK_ACTIONS), _top("block_actions"), values).map(lambda p: (interaction(p), FORM)),
    mutated_form(SLASH_COMMAND).map(lambda f: (form(f), FORM)),
    st.text(max_size=40).map(lambda t: (t.encode(), FORM)),
    st.tuples(st.binary(max_size=40), st.sampled_from([JSON, FORM])),
)


def _readers(body: bytes, content_type: str) -> None:
    """Read a body the gate let through as the listeners will; anything but PayloadError is a bug."""
    text = body.decode()
    if reads_as_json(text, content_type):
        payload = json.loads(text)
        if payload["type"] == "event_callback":
            parse.from_event(payload, "UBOT", RECEIVED)  # not even PayloadError: an event is answered or not
        return
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in fields:
        payload = json.loads(fields["payload"])
        with contextlib.suppress(parse.PayloadError):
            parse.from_action(payload, payload["actions"][0], RECEIVED)
    elif "command" in fields:
        with contextlib.suppress(parse.PayloadError):
            parse.from_command(fields, RECEIVED)


@FUZZ
@given(bodies)
def test_signed_bodies_are_refused_with_400_or_read_without_an_exception(case: tuple[bytes, str]) -> None:
    body, content_type = case
    refused = gate.check(body, signed(body, content_type))
    if refused is not None:
        assert refused.status_code == 400, error_of(refused)
        error_of(refused)
        return
    _readers(body, content_type)


header_values = st.text(max_size=20) | st.sampled_from(["²", "1" * 5000, str(NOW), f"v0={'0' * 64}", ""])
header_names = st.sampled_from(["x-slack-request-timestamp", "x-slack-signature", "content-type"]) | st.text(
    "abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12
)


@FUZZ
@given(
    st.binary(max_size=200) | bodies.map(lambda c: c[0]),
    st.dictionaries(header_names, header_values, max_size=4),
    st.lists(st.tuples(header_names, st.binary(max_size=20)), max_size=4),
)
def test_unsigned_requests_are_always_401_or_413(
    body: bytes, headers: dict[str, str], raw: list[tuple[str, bytes]]
) -> None:
    # Headers as a plain mapping (any str at all) and as the server builds them (any bytes, latin-1).
    as_served = Headers(raw=[(name.encode(), value) for name, value in raw])
    for given_headers in (headers, as_served):
        assert status(gate.check(body, given_headers)) == 401
        assert status(gate.check_headers(given_headers)) in (None, 401)
    assert status(gate.check(body + b"x" * (MAX_BODY_BYTES + 1), headers)) == 413


# -- what Bolt makes of what the gate lets through ------------------------------------------------


class _Fixed(AsyncAuthorize):
    async def __call__(self, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=None, team_id="T0001", bot_user_id="UBOT", bot_id="BBOT", bot_token="xoxb"
        )


class _Installations(AsyncInstallationStore):
    """What Bolt's own uninstall and token-revocation listeners call, checking what they are given."""

    async def async_save(self, installation: Any) -> None:
        raise AssertionError("not in these tests")

    async def async_find_installation(self, **_: Any) -> None:
        return None

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        for value in (enterprise_id, team_id, user_id):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"an id that is no string reached the installation store: {value!r}")

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)


def bolt_app(failures: list[BaseException], heard: list[str] | None = None) -> AsyncApp:
    """Bolt as the adapter sets it up (signature check, authorization, process_before_response, and
    the uninstall listeners of multi-workspace mode), with listeners of the same shapes that only
    parse (and say so in `heard`): a listener error is recorded, and is a 500."""
    heard = [] if heard is None else heard
    quiet = logging.getLogger("tests.slack_gate.bolt")
    quiet.setLevel(logging.CRITICAL)
    app = AsyncApp(
        signing_secret=SECRET,
        authorize=_Fixed(),
        installation_store=_Installations(),
        process_before_response=True,
        logger=quiet,
    )

    @app.event("message")
    @app.event("app_mention")
    async def on_event(body: dict[str, Any]) -> None:
        heard.append("event")
        parse.from_event(body, "UBOT", RECEIVED)

    @app.command(COMMAND)
    async def on_command(ack: Callable[[], Awaitable[None]], body: dict[str, Any]) -> None:
        heard.append("command")
        parse.from_command(body, RECEIVED)
        await ack()

    @app.action(re.compile(f"^{parse.RESOLVE_ACTION}"))
    async def on_action(
        ack: Callable[[], Awaitable[None]], body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        heard.append("action")
        parse.from_action(body, action, RECEIVED)
        await ack()

    app.enable_token_revocation_listeners()

    @app.event(re.compile(".*"))
    async def on_other_event() -> None:
        pass

    @app.error
    async def on_error(error: BaseException) -> BoltResponse:
        if isinstance(error, parse.PayloadError):
            return BoltResponse(status=400, body="")  # the adapter answers these with 400 too
        failures.append(error)
        return BoltResponse(status=500, body="")

    return app


async def _dispatch(app: AsyncApp, body: bytes, headers: dict[str, str]) -> int:
    # As the adapter hands it over; construction parses the body and builds Bolt's context.
    return (await app.async_dispatch(bolt_request(body, headers))).status


async def _bolt_problems(cases: list[tuple[bytes, str]]) -> list[str]:
    """Hand Bolt every case the gate lets through: what went wrong, case by case (nothing, hopefully)."""
    failures: list[BaseException] = []
    app = bolt_app(failures)
    problems = []
    for body, content_type in cases:
        headers = signed(body, content_type, int(time.time()))  # Bolt checks against the real time
        if Gate(SECRET).check(body, headers) is not None:
            continue
        answered = await _dispatch(app, body, headers)
        if failures or answered not in (200, 400):
            problems.append(f"{body[:300]!r}: {answered} {failures}")
            failures.clear()
    return problems


@FUZZ
@given(bodies)
def test_bolt_never_fails_on_what_the_gate_lets_through(case: tuple[bytes, str]) -> None:
    assert asyncio.run(_bolt_problems([case])) == []


def _paths(value: Any, trail: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every field of every object and every item of every list, as the keys that lead to it."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*trail, key)
        yield from _paths(item, (*trail, key))


GONE = object()  # in place of a new value: the field is taken away


def _changed(original: Any, path: tuple[str | int, ...], new: Any) -> Any:
    changed = copy.deepcopy(original)
    *way, last = path
    target = changed
    for key in way:
        target = target[key]
    if new is GONE:
        del target[last]
    else:
        target[last] = new
    return changed


# Fields that someone reads (Bolt, whatever the payload's type, or the parsers): added where they
# do not belong, with a few of the values they must not have.
READ = ["event", "command", "type", "authorizations", "response_urls", "assistant_thread", "tokens", "team"]
READ += ["user", "channel", "enterprise", "team_id", "user_id", "channel_id", "thread_ts", "response_url"]
READ += ["user_team", "actions", "view", "message", "payload", "ssl_check"]
ADDED = [None, 5, "x", [], {}, [{}]]


def _single_faults() -> Iterator[tuple[bytes, str]]:
    lean = {k: v for k, v in MESSAGE.items() if k != "blocks"}
    for payload, encode, content_type in (
        (event_callback(lean), json_body, JSON),
        # Bolt takes a DM in a thread for a talk with an assistant, and reads more of it.
        (event_callback({**DIRECT, "thread_ts": "1.0", "team": "T0001"}), json_body, JSON),
        (event_callback(ASSISTANT_STARTED), json_body, JSON),
        (event_callback(TOKENS_REVOKED), json_body, JSON),
        ({"token": "x", "challenge": "abc", "type": "url_verification"}, json_body, JSON),
        (BLOCK_ACTIONS, interaction, FORM),
    ):
        for path in _paths(payload):
            for new in [*NASTY, GONE]:
                yield encode(_changed(payload, path, new)), content_type
        # The payload itself and the objects right inside it, given a field that is read elsewhere.
        for where in [(), *((key,) for key, value in payload.items() if isinstance(value, dict))]:
            for key in READ:
                for new in ADDED:
                    yield encode(_changed(payload, (*where, key), new)), content_type
    strings = ["", "x", "x" * 300, "ß", "²", "/other", "[]"]
    for path in _paths(SLASH_COMMAND):
        for new in [*strings, GONE]:
            yield form(_changed(SLASH_COMMAND, path, new)), FORM
    for key in READ:
        for new in strings:
            yield form(_changed(SLASH_COMMAND, (key,), new)), FORM


def test_every_single_field_gone_or_wrong_is_refused_or_read_without_an_exception() -> None:
    """Each field of good payloads in turn, taken away or set to each troublesome value: refused with
    400, or read by the parsers and by Bolt without an exception. Exhaustive where the fuzzing is not."""
    cases = list(_single_faults())
    passed = []
    for body, content_type in cases:
        refused = gate.check(body, signed(body, content_type))
        if refused is None:
            _readers(body, content_type)
            passed.append((body, content_type))
        else:
            assert refused.status_code == 400
    assert asyncio.run(_bolt_problems(passed)) == []
    assert 100 < len(passed) < len(cases)  # both sides of the door are exercised


def test_a_command_that_mentions_payload_reaches_its_listener() -> None:
    """Bolt takes any form whose text contains "payload" for an interaction and, finding no `payload`
    field, reads it as {}: the command would reach no listener (404). `bolt_request` reads it right.
    When the first assertion fails, Bolt has fixed it, and `bolt_request` can hand over Bolt's own."""
    body = form({**SLASH_COMMAND, "text": "update fixed the payload parser"})
    assert parse_body(body.decode(), FORM) == {}
    assert bolt_request(body, signed(body, FORM)).body == SLASH_COMMAND | {
        "text": "update fixed the payload parser"
    }
    failures: list[BaseException] = []
    heard: list[str] = []
    app = bolt_app(failures, heard)
    assert asyncio.run(_dispatch(app, body, signed(body, FORM, int(time.time())))) == 200
    assert heard == ["command"] and failures == []
    # Nothing else changes: an interaction and a command without the word are read as Bolt reads them.
    for body in (interaction(BLOCK_ACTIONS), form(SLASH_COMMAND)):
        assert bolt_request(body, signed(body, FORM)).body == parse_body(body.decode(), FORM)


# -- reading the body -----------------------------------------------------------------------------


def _request(receive: Callable[[], Awaitable[Message]], content_length: str | None = None) -> Request:
    headers = [] if content_length is None else [(b"content-length", content_length.encode("latin-1"))]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/slack/events",
        "headers": headers,
        "query_string": b"",
    }
    return Request(scope, receive)


def _never_called() -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    return receive


class Endless:
    """A sender that never stops: 64 KiB chunks, counted as they are handed over."""

    def __init__(self, chunk: int = 65_536) -> None:
        self.chunk = chunk
        self.sent = 0

    async def __call__(self) -> Message:
        self.sent += self.chunk
        return {"type": "http.request", "body": b"x" * self.chunk, "more_body": True}


async def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    for declared in ("1001", "9" * 5000):
        with pytest.raises(BodyError) as refused:
            await read_body(_request(_never_called(), declared), limit=1000, timeout=1)
        assert refused.value.status == 413 and not refused.value.disconnected


@pytest.mark.parametrize("declared", ["²", "12a", "-1", " 12", "1e3", ""])
async def test_a_content_length_that_is_no_number_is_400(declared: str) -> None:
    with pytest.raises(BodyError) as refused:
        await read_body(_request(_never_called(), declared), limit=1000, timeout=1)
    assert refused.value.status == 400 and not refused.value.disconnected


async def test_an_undeclared_body_is_cut_off_just_past_the_limit() -> None:
    sender = Endless()
    with pytest.raises(BodyError) as refused:
        await read_body(_request(sender), limit=1_000_000, timeout=5)
    assert refused.value.status == 413
    # Reading stopped at the chunk that crossed the limit: memory held never passes limit + one chunk.
    assert 1_000_000 < sender.sent <= 1_000_000 + sender.chunk


async def test_a_lying_content_length_does_not_let_more_in() -> None:
    sender = Endless()
    with pytest.raises(BodyError) as refused:
        await read_body(_request(sender, "10"), limit=1000, timeout=5)
    assert refused.value.status == 413 and sender.sent == sender.chunk


async def test_a_stalled_body_times_out_with_408() -> None:
    first = True

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b'{"type": ', "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    started = time.monotonic()
    with pytest.raises(BodyError) as refused:
        await read_body(_request(receive, "100"), limit=1000, timeout=0.2)
    assert refused.value.status == 408
    assert time.monotonic() - started < 2


async def test_a_trickling_body_times_out_too() -> None:
    async def receive() -> Message:
        await asyncio.sleep(0.02)
        return {"type": "http.request", "body": b"x", "more_body": True}

    with pytest.raises(BodyError) as refused:
        await read_body(_request(receive), limit=1_000_000, timeout=0.3)
    assert refused.value.status == 408


async def test_a_client_that_hangs_up_is_told_apart() -> None:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    with pytest.raises(BodyError) as refused:
        await read_body(_request(receive), limit=1000, timeout=1)
    assert refused.value.status == 400 and refused.value.disconnected


async def test_a_body_in_chunks_is_read_whole() -> None:
    chunks = [b'{"type": ', b'"url_verification", ', b'"challenge": "c"}']
    received: list[Message] = [
        *(
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ),
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return received.pop(0)

    request = _request(receive, str(sum(map(len, chunks))))
    body = await read_body(request, limit=len(b"".join(chunks)), timeout=1)
    assert body == b"".join(chunks)


def _served() -> Starlette:
    async def echo(request: Request) -> Response:
        try:
            body = await read_body(request, limit=1000, timeout=0.5)
        except BodyError as error:
            # A body left half-read leaves the connection in no state to take another request.
            return JSONResponse(
                {"error": error.error}, status_code=error.status, headers={"Connection": "close"}
            )
        return Response(body)

    return Starlette(routes=[Route("/in", echo, methods=["POST"])])


def _exchange(url: str, request: bytes) -> tuple[bytes, float, float]:
    """Send raw bytes, then read until the server closes: the answer, when it came, when it closed."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    answered = closed = 0.0
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65_536):
            answered = answered or time.monotonic() - started
            answer += chunk
        closed = time.monotonic() - started
    return answer, answered, closed


def test_under_uvicorn_a_stalled_or_oversized_body_is_answered_at_once_and_the_connection_closed() -> None:
    head = "POST /in HTTP/1.1\r\nHost: x\r\n{}\r\n".format
    with serving(_served()) as url:
        answer, answered, closed = _exchange(url, head("Content-Length: 100\r\n").encode() + b"only ten b")
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert 0.4 < answered < 2 and closed < 2
        answer, answered, closed = _exchange(url, head("Content-Length: 5000000\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 413") and closed < 1, answer[:80]
        chunk = b"800\r\n" + b"x" * 2048 + b"\r\n"
        answer, answered, closed = _exchange(url, head("Transfer-Encoding: chunked\r\n").encode() + chunk * 3)
        assert answer.startswith(b"HTTP/1.1 413") and closed < 1, answer[:80]
        answer, _, _ = _exchange(url, head("Content-Length: 5\r\nConnection: close\r\n").encode() + b"hello")
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nhello"), answer
