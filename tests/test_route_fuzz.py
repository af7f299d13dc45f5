# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""Every route of the running server, fed arbitrary bodies, signed and unsigned: never a 5xx, and a
refused request stores nothing."""

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from store.models import InboxMessage, OutboxMessage
from tests.slack_fixtures import Running, mock, running, slack_world  # noqa: F401
from tests.slack_harness import event_body, signature_headers

ROUTES = [
    ("POST", "/slack/events"),
    ("GET", "/slack/events"),
    ("GET", "/healthz"),
    ("POST", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/api/messages"),
    ("POST", "/twilio/whatsapp"),
    ("GET", "/nowhere"),
]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
KEYS = ["type", "event", "channel", "user", "text", "ts", "team_id", "actions", "payload", "command"]


@st.composite
def slack_shaped(draw: st.DrawFn) -> bytes:
    """A real event with some of its fields replaced by arbitrary values."""
    body: dict[str, Any] = event_body(
        {"type": "message", "channel": "C0001", "user": "UMEMBER1", "text": "update: x", "ts": "1.0"},
        draw(st.text(min_size=1, max_size=10)),
    )
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        target = body["event"] if draw(st.booleans()) and isinstance(body.get("event"), dict) else body
        target[key] = draw(json_values)
    return json.dumps(body).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    slack_shaped(),
    st.dictionaries(st.sampled_from(KEYS), st.text(max_size=20), max_size=4).map(
        lambda form: "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "surrogatepass")
    ),
)


def _stored(run: Running) -> tuple[int, int]:
    with run.bot.store() as store:
        inbox = store.session.exec(select(func.count()).select_from(InboxMessage)).one()
        outbox = store.session.exec(select(func.count()).select_from(OutboxMessage)).one()
    return inbox, outbox


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    signed=st.booleans(),
)
def test_no_route_answers_5xx_and_a_refusal_stores_nothing(
    running: Running, route: tuple[str, str], body: bytes, content_type: str, signed: bool
) -> None:
    method, path = route
    headers = {"Content-Type": content_type} if content_type else {}
    if signed:
        headers |= signature_headers(body)
    running.settle()  # what an earlier example stored is handled (its replies written) before counting
    before = _stored(running)
    response = httpx.request(method, f"{running.url}{path}", content=body, headers=headers, timeout=10)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert _stored(running) == before
        if response.headers.get("content-type", "").startswith("application/json"):
            assert "error" in response.json() or "detail" in response.json()
