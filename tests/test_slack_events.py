# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""Slack end to end: signed requests through the real server, replies through the real slack_sdk
client to a local mock of the Web API."""

import json
import logging
import socket
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import func, select

from bot import admin
from bot.core.clock import FixedClock
from bot.runtime.delivery import UNSEEN
from bot.runtime.serve import build_server
from bot.runtime.settings import Settings
from bot.runtime.shedding import MAX_IN_FLIGHT
from store.models import InboxMessage, OutboxMessage, OutboxStatus, Update
from tests.conftest import NOW
from tests.platform_run import slow_writes
from tests.slack_fixtures import CHANNEL, MEMBER, Running, mock, running, slack_world  # noqa: F401
from tests.slack_harness import BOT_ID, BOT_TOKEN, BOT_USER, SIGNING_SECRET, TEAM, event_body


def _message(text: str, ts: str = "1700000000.000100", user: str = "UMEMBER1", **extra: str) -> dict:
    return {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": ts,
        **extra,
    }


def _updates(run: Running) -> list[Update]:
    with run.bot.store() as store:
        return list(store.session.exec(select(Update).where(Update.platform == "slack")))


def _processed(run: Running) -> int:
    with run.bot.store() as store:
        return store.session.exec(
            select(func.count()).select_from(InboxMessage).where(InboxMessage.platform == "slack")
        ).one()


def test_url_verification_challenge_is_answered(running: Running) -> None:
    response = running.event(
        {
            "token": "x",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    assert response.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.text


def test_stalled_unsigned_bodies_do_not_crowd_out_slack(running: Running) -> None:
    """More half-sent requests than the requests-in-flight bound (anyone can send them: the signature
    is checked once the body is in) leave Slack's message accepted, not refused with 503."""
    host, port = running.url.removeprefix("http://").split(":")
    # Headers that look signed (a fresh timestamp, a signature of the right form), which cannot be
    # refused before the body they sign is in.
    looks_signed = f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0={'0' * 64}\r\n"
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += looks_signed.encode()
    stalled = []
    try:
        for _ in range(MAX_IN_FLIGHT + 20):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(head + b"Content-Length: 1000\r\n\r\n{")
            stalled.append(sock)
        time.sleep(0.5)  # each through the door, waiting for the rest of its body
        response = running.event(event_body(_message("update: past the stalled ones"), "EvStall"))
        assert response.status_code == 200
        running.settle()
        assert [u.text for u in _updates(running)] == ["past the stalled ones"]
    finally:
        for sock in stalled:
            sock.close()


def test_channel_message_records_an_update_and_replies_in_its_thread(running: Running) -> None:
    response = running.event(event_body(_message("update: mapped 40 bus stops"), "Ev0001"))
    assert response.status_code == 200
    post = running.mock.wait_for("chat.postMessage")[0]
    running.settle()
    assert post.params["channel"] == CHANNEL
    assert post.params["thread_ts"] == "1700000000.000100"
    assert "recorded for Alpha" in post.params["text"]
    assert post.headers["authorization"] == "Bearer xoxb-1111-2222-testtoken"
    [update] = _updates(running)
    assert update.text == "mapped 40 bus stops" and update.author == MEMBER
    [reaction] = running.mock.wait_for("reactions.add")
    assert reaction.params["name"] == "white_check_mark"
    assert reaction.params["timestamp"] == "1700000000.000100"


def test_a_message_already_in_a_thread_is_answered_in_that_thread(running: Running) -> None:
    running.event(
        event_body(_message("/cda blockers", ts="1700000000.000200", thread_ts="1699999999.000001"), "Ev0002")
    )
    post = running.mock.wait_for("chat.postMessage")[0]
    assert post.params["thread_ts"] == "1699999999.000001"
    assert post.params["blocks"][0]["type"] == "header"
    assert "ALPHA-BLOCKER-TEXT" in str(post.params["blocks"])


def test_the_same_event_three_times_is_recorded_and_answered_once(running: Running) -> None:
    body = event_body(_message("update: retried update"), "Ev0RETRY")
    first = running.event(body)
    second = running.event(body, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    third = running.event(body, {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    running.mock.wait_for("chat.postMessage")
    running.settle()
    time.sleep(0.2)
    assert [u.text for u in _updates(running)] == ["retried update"]
    assert len(running.mock.named("chat.postMessage")) == 1
    assert len(running.mock.named("reactions.add")) == 1


def test_chatter_in_an_unbound_channel_and_bot_messages_are_ignored(running: Running) -> None:
    unbound = _message("update: not for the bot", ts="1.1") | {"channel": "C0UNBOUND"}
    from_bot = _message("update: I am a bot", ts="1.2", bot_id="B0OTHER")
    own = _message("update: my own echo", ts="1.3", user=BOT_USER, bot_id=BOT_ID)
    edited = _message("update: edited", ts="1.4", subtype="message_changed")
    for index, event in enumerate([unbound, from_bot, own, edited]):
        assert running.event(event_body(event, f"EvIGNORED{index}")).status_code == 200
    running.settle()
    assert running.mock.named("chat.postMessage") == []
    assert _updates(running) == []
    assert _processed(running) == 0


def test_a_direct_message_and_a_mention_reach_the_core(running: Running) -> None:
    direct = {
        "type": "message",
        "channel": "D0MEMBER",
        "channel_type": "im",
        "user": "UMEMBER1",
        "text": "/cda next",
        "ts": "2.1",
    }
    mention = {
        "type": "app_mention",
        "channel": "C0UNBOUND",
        "user": "UMEMBER1",
        "text": f"<@{BOT_USER}> update: said with a mention",
        "ts": "2.2",
    }
    # Slack also sends the mention as a plain message event: answered once, as the mention.
    echo = _message(f"<@{BOT_USER}> update: said with a mention", ts="2.2") | {"channel": "C0UNBOUND"}
    running.event(event_body(direct, "EvDM"))
    running.event(event_body(mention, "EvMENTION"))
    running.event(event_body(echo, "EvMENTIONECHO"))
    posts = running.mock.wait_for("chat.postMessage", 3)
    running.settle()
    assert len(running.mock.named("chat.postMessage")) == 3, posts
    in_dm = [p.params for p in posts if p.params["channel"] == "D0MEMBER"]
    [in_channel] = [p.params for p in posts if p.params["channel"] == "C0UNBOUND"]
    assert all(p.get("thread_ts") is None for p in in_dm)  # a DM is answered inline
    assert any("ALPHA session" in p["text"] for p in in_dm)
    # A channel no city is bound to sees no city's data: the confirmation goes to the member's DM,
    # and the thread says where it went.
    assert any("recorded for Alpha" in p["text"] for p in in_dm)
    assert in_channel["thread_ts"] == "2.2"
    assert "direct message" in in_channel["text"] and "Alpha" not in in_channel["text"]
    assert [u.text for u in _updates(running)] == ["said with a mention"]


def test_a_bad_signature_or_a_stale_timestamp_is_refused_and_stores_nothing(running: Running) -> None:
    import json

    from tests.slack_harness import signature_headers

    body = json.dumps(event_body(_message("update: forged"), "EvFORGED")).encode()
    forged = signature_headers(body, secret="not-the-secret")
    stale = signature_headers(body, timestamp=int(time.time()) - 6 * 60)
    unsigned = {"X-Slack-Signature": "", "X-Slack-Request-Timestamp": ""}
    for headers in (forged, stale, unsigned):
        response = running.post(body, "application/json", headers)
        assert response.status_code == 401
        assert response.json() == {"error": "invalid or stale Slack signature"}
    time.sleep(0.2)
    running.settle()
    assert _processed(running) == 0 and _updates(running) == []
    assert running.mock.named("chat.postMessage") == []


def test_malformed_bodies_get_400(running: Running) -> None:
    cases = [
        (b'{"type": "event_callback", ', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        (b"command=%2Fcda&text=status", "application/x-www-form-urlencoded"),  # no team, user, channel
        (b"just some words", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
    ]
    for body, content_type in cases:
        response = running.post(body, content_type)
        assert response.status_code == 400, body
        assert set(response.json()) == {"error"}
    running.settle()
    assert _processed(running) == 0


def test_the_ack_is_fast_while_the_web_api_is_slow(running: Running) -> None:
    running.mock.delay["chat.postMessage"] = 5
    started = time.monotonic()
    response = running.event(event_body(_message("update: slow api"), "EvSLOW"))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 3, elapsed
    running.mock.wait_for("chat.postMessage")
    running.settle(timeout=20)
    assert [u.text for u in _updates(running)] == ["slow api"]


def test_rate_limited_reply_is_sent_after_retry_after(running: Running) -> None:
    running.mock.rate_limit["chat.postMessage"] = 1
    running.event(event_body(_message("update: under rate limit"), "EvRATE"))
    first, second = running.mock.wait_for("chat.postMessage", 2)
    running.settle()
    assert second.at - first.at >= 1.0
    assert second.params["text"] == first.params["text"]
    assert len(running.mock.named("chat.postMessage")) == 2


def test_other_events_are_acknowledged(running: Running) -> None:
    body = event_body(
        {"type": "reaction_added", "user": "UMEMBER1", "reaction": "tada", "ts": "3.1"}, "EvOTHER"
    )
    assert running.event(body).status_code == 200
    assert TEAM == "T0001"


def test_starting_slack_logs_nothing_about_an_unused_token(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Bolt reads SLACK_BOT_TOKEN from the environment by itself; the bot authorizes requests itself.
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_signing_secret=SIGNING_SECRET,
        slack_bot_token=BOT_TOKEN,
        slack_api_base_url="http://127.0.0.1:9/api/",
    )
    with caplog.at_level(logging.DEBUG):
        build_server(settings, engine, FixedClock(NOW))
    assert [r.getMessage() for r in caplog.records if "token" in r.getMessage().lower()] == []


def test_past_the_backlog_bound_slack_is_told_to_retry_and_nothing_is_stored(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.runtime.intake.MAX_BACKLOG", 0)
    response = running.event(event_body(_message("update: one too many"), "EvBUSY"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert _updates(running) == [] and _processed(running) == 0
    monkeypatch.setattr("bot.runtime.intake.MAX_BACKLOG", 500)
    assert running.event(event_body(_message("update: one too many"), "EvBUSY")).status_code == 200
    running.settle()
    assert [u.text for u in _updates(running)] == ["one too many"]
    assert httpx.get(f"{running.url}/readyz").json()["backlog"] == {"inbox": 0, "outbox_in_flight": 0}


def test_an_event_still_being_written_at_the_deadline_is_refused_and_its_retry_dropped(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack sends an event again after a 503, so one whose write is still under way at the deadline
    may be refused: it is stored all the same, and the retry finds it. Recorded and answered once."""
    slow_writes(monkeypatch, 2.0)
    body = event_body(_message("update: written slowly"), "EvSLOWWRITE")
    assert running.event(body).status_code == 503
    running.mock.wait_for("chat.postMessage")
    monkeypatch.undo()  # by Slack's retry the database is quick again
    retry = running.event(body, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})
    assert retry.status_code == 200
    running.settle()
    assert [u.text for u in _updates(running)] == ["written slowly"]
    assert len(running.mock.named("chat.postMessage")) == 1


def test_what_a_member_typed_never_becomes_a_mention_in_the_bots_posts(running: Running) -> None:
    """Typed as characters, `<!channel>` reaches the bot escaped (Slack escapes &, < and >) and is stored
    as typed. The bot's own posts must keep it text: in the notification text (`text`, which Slack reads
    for mentions and shows in push notifications) as in the blocks, or the bot pings the channel."""
    typed = "update: &lt;!channel&gt; and &lt;@UCOACH1&gt; read this"
    running.event(event_body(_message(typed, ts="7.1"), "EvTYPED"))
    running.event(event_body(_message("/cda updates", ts="7.2"), "EvLIST"))
    posts = running.mock.wait_for("chat.postMessage", 2)
    running.settle()
    [listing] = [p.params for p in posts if p.params.get("thread_ts") == "7.2"]
    assert "<!channel> and <@UCOACH1> read this" in _updates(running)[0].text
    for shown in (listing["text"], json.dumps(listing["blocks"])):
        assert "<!channel>" not in shown and "<@UCOACH1>" not in shown
    assert "&lt;!channel&gt; and &lt;@UCOACH1&gt; read this" in listing["text"]


def test_an_update_is_stored_as_the_member_typed_it_not_in_slacks_markup(running: Running) -> None:
    """Slack sends links, channels and @here as its own markup (`<https://…>`, `<#C…|name>`,
    `<!here>`): stored so, the dashboard, the CSV export and every other platform would show the
    angle brackets and ids instead of what the member wrote."""
    sent = (
        "update: draft at <https://example.org/plan> and <http://maps.example.org|maps.example.org>, "
        "see <https://docs.example.org/x|the brief> and <mailto:ana@example.org|ana@example.org>; "
        "<!here> in <#C0001|alpha-team> &amp; <#C0002>, A &lt;3 B"
    )
    running.event(event_body(_message(sent, ts="8.1"), "EvMARKUP"))
    running.mock.wait_for("chat.postMessage")
    running.settle()
    [update] = _updates(running)
    assert update.text == (
        "draft at https://example.org/plan and maps.example.org, see the brief (https://docs.example.org/x)"
        " and ana@example.org; @here in #alpha-team & <#C0002>, A <3 B"
    )


def test_a_file_is_said_to_be_unread_never_an_empty_message_nor_silently_dropped(running: Running) -> None:
    """A file shared with the bot arrives as a `file_share` message: the bot reads text only, and says
    so, as it does on Teams and WhatsApp; an update typed with a file is still recorded."""
    picture = {
        "id": "F0MAP",
        "name": "map.png",
        "mimetype": "image/png",
        "url_private": "https://files.invalid/F0MAP",
    }
    alone = {
        "type": "message",
        "subtype": "file_share",
        "channel": "D0MEMBER",
        "channel_type": "im",
        "user": "UMEMBER1",
        "text": "",
        "ts": "9.1",
        "files": [picture],
    }
    captioned = _message("update: the bus stop map", ts="9.2", subtype="file_share") | {"files": [picture]}
    running.event(event_body(alone, "EvFILE"))
    running.event(event_body(captioned, "EvFILEUPDATE"))
    posts = running.mock.wait_for("chat.postMessage", 3)
    running.settle()
    in_dm = [p.params["text"] for p in posts if p.params["channel"] == "D0MEMBER"]
    in_thread = [p.params["text"] for p in posts if p.params.get("thread_ts") == "9.2"]
    assert [t.startswith("Text only for now") for t in in_dm] == [True]
    assert sorted(t.startswith("Text only for now") for t in in_thread) == [False, True]
    assert any("recorded for Alpha" in t for t in in_thread)
    assert [u.text for u in _updates(running)] == ["the bus stop map"]


def test_a_reply_slack_held_back_is_not_posted_once_its_channel_is_another_citys(running: Running) -> None:
    """Alpha's member asks for Alpha's status in Alpha's channel; Slack keeps answering 429 (past the
    SDK's own two retries), and before the bot's retry an admin binds the channel to Beta (it changed
    hands). Alpha's status is not posted there."""
    running.mock.rate_limit["chat.postMessage"] = 3
    running.event(event_body(_message("cda status", ts="1700000000.000300"), "EvHELD"))
    refused = running.mock.wait_for("chat.postMessage", 3)
    assert all("Alpha" in call.params["text"] for call in refused)  # what Slack refused
    with running.bot.store() as store:
        admin.bind(store, f"slack:{TEAM}:{CHANNEL}", "beta", running.bot.clock.now())
    running.bot.clock.set(running.bot.clock.now() + timedelta(seconds=5))  # past Retry-After: 1
    time.sleep(1.5)
    running.settle()
    assert running.mock.named("chat.postMessage") == refused
    with running.bot.store() as store:
        [row] = [r for r in store.session.exec(select(OutboxMessage)) if r.recipient.endswith(CHANNEL)]
    assert (row.status, row.last_error) == (OutboxStatus.dropped, UNSEEN)
