"""Activities as inbound messages: identities, threads, mentions, submits, installs; and a fuzz of
`POST /api/messages` with valid tokens over arbitrary activities: never a 5xx, a refusal stores nothing."""

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from adapters.teams import parse
from bot.core.messages import InboundMessage
from store.models import InboxMessage, OutboxMessage
from tests.teams_harness import (
    BOT,
    CHANNEL_THREAD,
    MEMBER_AAD,
    TENANT,
    Teams,
    installed,
    message,
    teams,
    teams_fakes,
    teams_world,
)

__all__ = ["teams", "teams_fakes", "teams_world"]

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
SERVICE = "https://smba.trafficmanager.net/amer/"


def _parse(body: dict[str, Any], local: bool = False) -> InboundMessage | None:
    return parse.from_message(parse.read_activity(json.dumps(body).encode()), AT, local)


def test_a_channel_message_names_the_channel_without_its_thread_and_the_person_by_aad_id() -> None:
    parsed = _parse(message(SERVICE, "update: x", activity_id="42"))
    assert parsed is not None
    msg = parsed
    assert msg.conversation == f"teams:{TENANT}:{CHANNEL_THREAD}"
    assert msg.sender == f"teams:{TENANT}:{MEMBER_AAD}"
    assert msg.text == "update: x" and msg.addressed and not msg.direct and not msg.private
    assert msg.message_id == f"{CHANNEL_THREAD}|42"
    assert msg.reference is not None and msg.reference["conversation"]["id"] == CHANNEL_THREAD
    assert msg.reply_context == {
        "reference": {
            **msg.reference,
            "conversation": {**msg.reference["conversation"], "id": f"{CHANNEL_THREAD};messageid=42"},
            "activityId": "42",
        },
        "replyToId": "42",
    }
    # Who to write to privately: the person, no conversation yet.
    assert parsed.sender_reference is not None
    assert parsed.sender_reference["conversation"] == {"conversationType": "personal", "tenantId": TENANT}
    assert parsed.sender_reference["user"]["id"] == f"29:{MEMBER_AAD}"


def test_the_tenant_comes_from_channel_data_when_the_conversation_has_none() -> None:
    body = message(SERVICE, "update: x")
    del body["conversation"]["tenantId"]
    parsed = _parse(body)
    assert parsed is not None and parsed.sender == f"teams:{TENANT}:{MEMBER_AAD}"


def test_no_tenant_at_all_is_refused_unless_local() -> None:
    body = message(SERVICE, "update: x", tenant=None)
    with pytest.raises(parse.PayloadError):
        _parse(body)
    parsed = _parse(body, local=True)
    assert parsed is not None and parsed.sender.startswith("teams:local:")


def test_chatter_without_a_mention_is_not_addressed_and_bots_messages_are_ignored() -> None:
    parsed = _parse(message(SERVICE, "lunch?", mention=False))
    assert parsed is not None and not parsed.addressed
    own = message(SERVICE, "update: echo")
    own["from"] = dict(BOT)
    assert _parse(own) is None
    # Another bot in the channel, mentioning this one: not a member of the channel's city.
    other = message(SERVICE, "update: posted by a workflow bot")
    other["from"] = {"id": "28:99999999-8888-4777-8666-555555555555", "name": "Workflows"}
    assert _parse(other) is None
    other["from"] = {"id": "29:1a2b3c", "name": "Relay", "role": "bot"}
    assert _parse(other) is None


def test_a_personal_chat_is_direct_and_private() -> None:
    parsed = _parse(
        message(SERVICE, "/cda next", conversation="a:chat", conversation_type="personal", mention=False)
    )
    assert parsed is not None
    assert parsed.direct and parsed.private and parsed.sender_reference is None
    assert parsed.reply_context is not None and "replyToId" not in parsed.reply_context


def test_a_submit_is_the_presser_saying_resolve_privately() -> None:
    value = {"cdaAction": "resolve_blocker", "value": "12\n/cda digest"}
    parsed = _parse(
        message(SERVICE, "", value=value, conversation="19:group@thread.v2", conversation_type="groupChat")
    )
    assert parsed is not None
    assert parsed.text == "/cda resolve 12 /cda digest"  # one line: still only a resolve
    assert parsed.private and not parsed.direct and parsed.reply_context is None
    other = _parse(message(SERVICE, "", value={"cdaAction": "something_else"}))
    assert other is None


def test_install_and_removal_are_lifecycle_events_about_the_bot_only() -> None:
    event = parse.lifecycle(parse.read_activity(json.dumps(installed(SERVICE)).encode()), local=False)
    assert event is not None and event.installed and event.greet and event.channel
    assert event.conversation == f"teams:{TENANT}:{CHANNEL_THREAD}"
    gone = parse.lifecycle(parse.read_activity(json.dumps(installed(SERVICE, removed=True)).encode()), False)
    assert gone is not None and not gone.installed
    someone = installed(SERVICE)
    someone["membersAdded"] = [{"id": "29:someone-else"}]
    assert parse.lifecycle(parse.read_activity(json.dumps(someone).encode()), False) is None


# -- fuzz -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
KEYS = [
    "type",
    "id",
    "from",
    "conversation",
    "recipient",
    "text",
    "entities",
    "value",
    "channelData",
    "membersAdded",
    "membersRemoved",
    "action",
    "channelId",
    "replyToId",
    "locale",
    "attachments",
]


def _stored(run: Teams) -> tuple[int, int]:
    with run.bot.store() as store:
        inbox = store.session.exec(select(func.count()).select_from(InboxMessage)).one()
        outbox = store.session.exec(select(func.count()).select_from(OutboxMessage)).one()
    return inbox, outbox


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_signed_arbitrary_activities_never_get_a_5xx(teams: Teams, data: st.DataObject) -> None:
    body: dict[str, Any] = data.draw(
        st.sampled_from([message(teams.service_url, "update: fuzz"), installed(teams.service_url)])
    )
    body = json.loads(json.dumps(body))
    for key in data.draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        target = body
        if isinstance(body.get("conversation"), dict) and data.draw(st.booleans()):
            target = body["conversation"]
        target[key] = data.draw(json_values)
    teams.settle()  # what an earlier example stored is handled (its replies written) before counting
    before = _stored(teams)
    response = teams.post(body, token=teams.signer.token(teams.service_url))
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert _stored(teams) == before
    assert httpx.codes.is_success(response.status_code) or response.status_code in (400, 401)
