# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""The `/cda` slash command and the Resolve button, through the real server and the mock Web API."""

import json
import sqlite3
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from adapters.slack.adapter import NOT_STORED, STILL_SAVING
from bot.core.i18n import LANGUAGES
from bot.core.inbox import HANDOFF
from bot.core.messages import DeliveryError, Reply, not_saved, still_saving
from store.models import Blocker, BlockerStatus, InboxMessage, Update
from tests.platform_run import lost_write, outbox_of, slow_writes
from tests.slack_fixtures import CHANNEL, COACH, Running, mock, running, slack_world  # noqa: F401
from tests.slack_harness import TEAM, event_body
from tests.test_intake import commits_lost


def _slash(
    run: Running, user: str, text: str, trigger: str, channel: str = CHANNEL, response_url: bool = True
) -> httpx.Response:
    form = {
        "token": "unused",
        "team_id": TEAM,
        "channel_id": channel,
        "channel_name": "alpha-team",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/cda",
        "text": text,
        "response_url": f"{run.mock.base_url}/response/{trigger}",
        "trigger_id": trigger,
        "api_app_id": "A0001",
    }
    if not response_url:
        del form["response_url"]
    return run.form(form)


def _click(run: Running, trigger: str, action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A coach's click on a Resolve button under a notice in their DM, as Slack posts it."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": "UCOACH1", "team_id": TEAM},
        "api_app_id": "A0001",
        "trigger_id": trigger,
        "container": {"type": "message", "message_ts": "6.1", "channel_id": "D0COACH"},
        "channel": {"id": "D0COACH"},
        "response_url": f"{run.mock.base_url}/response/click",
        "actions": [action],
        **extra,
    }


def _command(run: Running, user: str, text: str, trigger: str, channel: str = CHANNEL) -> None:
    response = _slash(run, user, text, trigger, channel)
    assert response.status_code == 200
    assert response.text == ""  # the bare acknowledgement; the answer follows through response_url


def test_slash_command_as_coach_answers_privately_with_block_kit(running: Running) -> None:
    _command(running, "UCOACH1", "status", "trig-coach-1")
    [answer] = running.mock.wait_for("response_url")
    running.settle()
    assert answer.params["response_type"] == "ephemeral"
    blocks = answer.params["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Status — Alpha"}}
    labels = [f["text"].split("\n")[0] for f in blocks[1]["fields"]]
    assert labels == ["*Phase*", "*Last update*", "*Updates in 7 days*", "*Open blockers*", "*Next session*"]
    assert "Status — Alpha" in answer.params["text"]


def test_slash_command_as_member_records_and_refuses_coach_commands(running: Running) -> None:
    _command(running, "UMEMBER1", "update shipped the survey", "trig-member-1")
    _command(running, "UMEMBER1", "digest", "trig-member-2")
    _command(running, "UMEMBER1", "status beta", "trig-member-3")
    answers = running.mock.wait_for("response_url", 3)
    running.settle()
    texts = {a.params["text"] for a in answers}
    assert any(t.startswith("Update #") and "recorded for Alpha" in t for t in texts)
    assert "`/cda digest` is for coaches. Say `/cda help` to see what you can do." in texts
    assert "You can only see your own city's data (Alpha)." in texts
    assert "BETA" not in json.dumps([a.params for a in answers])


def test_small_export_is_shown_inline_and_a_large_one_is_uploaded(running: Running) -> None:
    _command(running, "UCOACH1", "export updates", "trig-export-1")
    [answer] = running.mock.wait_for("response_url")
    assert "```id,city,created_at" in json.dumps(answer.params["blocks"])
    for n in range(40):
        running.bot.say("console:a1", f"update: {'long update text ' * 8} number {n}")
    _command(running, "UCOACH1", "export updates", "trig-export-2")
    running.mock.wait_for("files.completeUploadExternal")
    running.settle()
    [opened] = running.mock.named("conversations.open")
    assert opened.params["users"] == "UCOACH1"
    [upload] = running.mock.named("upload")
    # Marked as UTF-8 for spreadsheets, like the coaches' page's CSV; the rows as shown inline.
    assert upload.body.startswith("\ufeffid,city,created_at,author,platform,text\r\n".encode())
    assert "number 39" in upload.body.decode("utf-8-sig")


def test_a_blocker_notice_reaches_the_slack_coach_and_its_button_resolves_it(running: Running) -> None:
    event = {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "UMEMBER1",
        "text": "blocker: the GIS server is down",
        "ts": "5.1",
    }
    running.event(event_body(event, "EvBLOCKER"))
    posts = running.mock.wait_for("chat.postMessage", 2)
    running.settle()
    notice = next(p.params for p in posts if p.params["channel"] == "UCOACH1")
    assert "the GIS server is down" in notice["text"]
    [actions] = [b for b in notice["blocks"] if b["type"] == "actions"]
    [button] = actions["elements"]
    assert button["text"]["text"] == "Resolve" and button["action_id"].startswith("resolve_blocker")
    with running.bot.store() as store:
        blocker = store.session.get(Blocker, int(button["value"]))
        assert blocker is not None and blocker.status == BlockerStatus.open

    action = {**button, "type": "button", "block_id": "b1", "action_ts": "6.2"}
    click = _click(running, "trig-click-1", action, message={"ts": "6.1", "text": notice["text"]})
    response = running.form({"payload": json.dumps(click)})
    assert response.status_code == 200
    reply = running.mock.wait_for("chat.postMessage", 3)[-1]
    running.settle()
    assert reply.params["channel"] == "D0COACH" and reply.params["thread_ts"] == "6.1"
    assert reply.params["text"].startswith(f"Blocker #{button['value']} resolved")
    with running.bot.store() as store:
        blocker = store.session.get(Blocker, int(button["value"]))
        assert blocker is not None
        assert blocker.status == BlockerStatus.resolved and blocker.resolved_by == COACH


async def test_send_reports_a_lasting_rate_limit_with_retry_after(running: Running) -> None:
    [adapter] = running.server.adapters
    running.mock.rate_limit["chat.postMessage"] = 10
    with pytest.raises(DeliveryError) as raised:
        await adapter.send(COACH, Reply(text="hello"), None)
    assert raised.value.retry_after == 1.0 and not raised.value.permanent
    assert len(running.mock.named("chat.postMessage")) == 3  # the first try and two retries


def test_a_command_mentioning_payload_is_answered(running: Running) -> None:
    # Bolt alone takes any form whose text says "payload" for a button click, and answers 404.
    _command(running, "UMEMBER1", "update fixed the payload parser", "trig-payload-1")
    [answer] = running.mock.wait_for("response_url")
    running.settle()
    assert "recorded for Alpha" in answer.params["text"]


def test_a_slash_command_without_a_response_url_is_answered_to_the_person_not_the_channel(
    running: Running,
) -> None:
    """Only the person saw their command; Slack sends a response URL with every one, but should one come
    without, the answer (here the member's city's status) goes to them directly, never to the channel."""
    response = _slash(running, "UMEMBER1", "status", "trig-no-response-url", response_url=False)
    assert response.status_code == 200
    [answer] = running.mock.wait_for("chat.postMessage")
    assert answer.params["channel"] == "UMEMBER1" and "Alpha" in answer.params["text"]
    assert running.mock.named("response_url") == []


def test_an_answer_whose_response_url_expired_goes_to_the_persons_dm(running: Running) -> None:
    """A response URL takes answers for 30 minutes (and 5 of them): one spent or expired, as after a
    Slack outage, answers 404, and the answer goes to the person's DM instead of nowhere."""
    running.mock.expired.add("trig-late")
    _command(running, "UMEMBER1", "status", "trig-late")
    [answer] = running.mock.wait_for("chat.postMessage")
    assert answer.params["channel"] == "UMEMBER1" and "Alpha" in answer.params["text"]
    assert len(running.mock.named("response_url")) == 1
    running.settle()
    [row] = [r for r in outbox_of(running.bot, "slack") if r.kind == "reply"]
    assert row.status == "sent" and row.attempts == 1


def test_a_large_export_asked_in_a_channel_is_uploaded_to_the_coach_dm(running: Running) -> None:
    for n in range(40):
        running.bot.say("console:a1", f"update: {'long update text ' * 8} number {n}")
    mention = {
        "type": "app_mention",
        "channel": "C0UNBOUND",
        "user": "UCOACH1",
        "text": "<@UBOT0001> cda export updates",
        "ts": "7.1",
    }
    assert running.event(event_body(mention, "EvEXPORT")).status_code == 200
    [complete] = running.mock.wait_for("files.completeUploadExternal")
    running.settle()
    # Files go to conversations, not to user ids: the DM is opened first.
    [opened] = running.mock.named("conversations.open")
    assert opened.params["users"] == "UCOACH1"
    assert complete.params["channel_id"] == "D0DIRECT"
    [note] = running.mock.named("chat.postMessage")
    assert note.params["channel"] == "C0UNBOUND" and "direct message" in note.params["text"]


def test_a_slash_command_told_nothing_was_saved_is_withdrawn_and_never_recorded(running: Running) -> None:
    """Slack never retries a slash command: past the hub's 2-second deadline the person is told at once
    "nothing was saved, please try again". Here another writer holds SQLite's write lock for 2.6 s (as
    a `cda-bot` command beside the server can), so the message's batch has not begun by then: it is
    withdrawn, and once the lock comes free nothing of it is stored, handled or answered. The person
    who tries again as told records the update once."""
    database = running.bot.engine.url.database
    if running.bot.engine.dialect.name != "sqlite" or not database:
        pytest.skip("holds SQLite's write lock from outside the server")
    other_writer = sqlite3.connect(database, timeout=30, isolation_level=None, check_same_thread=False)
    other_writer.execute("BEGIN IMMEDIATE")  # e.g. `cda-bot calendar import` writing for a while
    released = threading.Event()

    def release_later() -> None:
        time.sleep(2.6)
        other_writer.execute("ROLLBACK")
        released.set()

    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        response = _slash(running, "UMEMBER1", "update surveyed the depot", "trig-slow-lock")
    finally:
        releaser.join(10)
        other_writer.close()
    assert released.is_set()
    assert response.status_code == 200 and response.text == NOT_STORED
    time.sleep(1.0)
    running.settle()
    with running.bot.store() as store:
        recorded = store.session.exec(select(Update).where(Update.text == "surveyed the depot")).all()
        stored = store.session.exec(select(InboxMessage).where(InboxMessage.message_id == "trig-slow-lock"))
        assert recorded == [] and stored.all() == []
    assert running.mock.named("response_url") == []


# Each 0.7 s or more from the 1.2 s deadline, so that a busy machine does not move it to the other side.
@pytest.mark.parametrize(("seconds", "told"), [(0.5, ""), (2.0, STILL_SAVING)])
def test_a_slash_command_being_written_at_the_deadline_is_not_told_nothing_was_saved(
    running: Running, monkeypatch: pytest.MonkeyPatch, seconds: float, told: str
) -> None:
    """Its batch began before the deadline, so it may be stored all the same, and "nothing was saved"
    would have the person record it twice. A write that ends within the rest of Slack's 3 s is
    acknowledged as usual; one still under way says the answer will follow, and only the answer does.
    It is recorded once."""
    slow_writes(monkeypatch, seconds)
    response = _slash(running, "UMEMBER1", "update surveyed the depot", "trig-slow-write")
    assert response.status_code == 200 and response.text == told  # what the person reads at once
    [answer] = running.mock.wait_for("response_url")
    running.settle()
    assert answer.params["text"].startswith("Update #"), answer.params["text"]
    time.sleep(0.5)
    assert running.mock.named("response_url") == [answer]
    with running.bot.store() as store:
        recorded = store.session.exec(select(Update).where(Update.text == "surveyed the depot")).all()
        assert len(recorded) == 1


@pytest.mark.parametrize(("readable", "told"), [(True, ""), (False, STILL_SAVING)], ids=["read", "unread"])
def test_a_slash_command_whose_commit_failed_after_it_took_is_not_told_nothing_was_saved(
    running: Running, monkeypatch: pytest.MonkeyPatch, readable: bool, told: str
) -> None:
    """The connection breaks during COMMIT, after the database committed: "nothing was saved" would have
    the person record the update twice. The inbox is read: found there, the command is acknowledged and
    answered as usual; if the read fails too, the person is told the answer will follow, which it does
    once the handoff has passed. Either way it is recorded once."""
    commits_lost(monkeypatch, committed=True, readable=readable)
    response = _slash(running, "UMEMBER1", "update surveyed the depot", "trig-lost-commit")
    assert response.status_code == 200 and response.text == told
    if not readable:
        running.bot.clock.set(running.bot.clock.now() + HANDOFF + timedelta(seconds=1))  # the sweep's turn
    [answer] = running.mock.wait_for("response_url")
    running.settle()
    assert answer.params["text"].startswith("Update #"), answer.params["text"]
    with running.bot.store() as store:
        recorded = store.session.exec(select(Update).where(Update.text == "surveyed the depot")).all()
        assert len(recorded) == 1


def test_a_slash_command_still_saving_at_the_deadline_is_told_once_if_the_write_then_fails(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The person was told the answer would follow once it is saved; the database fails the write 0.8 s
    after the deadline, so no answer ever would. They are told nothing was saved, once, through the
    command's response URL (not the outbox: the database is what failed), and nothing is recorded."""
    slow_writes(monkeypatch, 2.0, fail=lost_write())
    response = _slash(running, "UMEMBER1", "update surveyed the depot", "trig-lost-write")
    assert response.status_code == 200 and response.text == STILL_SAVING
    [told] = running.mock.wait_for("response_url")
    assert told.params["text"] == NOT_STORED and told.params["response_type"] == "ephemeral"
    # Slack names no language and the database that knows the city's is away: the team reads its own.
    for language in LANGUAGES:
        assert still_saving(language) in response.text and not_saved(language) in told.params["text"]
    running.settle()
    time.sleep(0.5)
    assert running.mock.named("response_url") == [told]
    assert running.mock.named("chat.postMessage") == []
    with running.bot.store() as store:
        recorded = store.session.exec(select(Update).where(Update.text == "surveyed the depot")).all()
        stored = store.session.exec(select(InboxMessage).where(InboxMessage.message_id == "trig-lost-write"))
        assert recorded == [] and stored.all() == []
    assert outbox_of(running.bot, "slack") == []


def test_a_click_still_being_written_at_the_deadline_whose_write_then_fails_is_told_so_once(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged while its write was under way (Slack never sends a click again); the write then
    fails, so the blocker stays open and no answer would ever come: the coach is told nothing was done."""
    _command(running, "UMEMBER1", "blocker the GIS server is down", "trig-blocker-2")
    running.settle()
    with running.bot.store() as store:
        [blocker] = store.session.exec(select(Blocker).where(Blocker.text == "the GIS server is down")).all()
    slow_writes(monkeypatch, 2.0, fail=lost_write())
    action = {"type": "button", "action_id": "resolve_blocker", "value": str(blocker.id)}
    posted = len(running.mock.named("chat.postMessage"))
    response = running.form({"payload": json.dumps(_click(running, "trig-lost-click", action))})
    assert response.status_code == 200
    running.mock.wait_for("chat.postMessage", posted + 1)
    running.settle()
    time.sleep(0.5)
    told = running.mock.named("chat.postMessage")[posted:]
    assert [(p.params["channel"], p.params["text"]) for p in told] == [("D0COACH", NOT_STORED)]
    with running.bot.store() as store:
        still = store.session.get(Blocker, blocker.id)
        assert still is not None and still.status == BlockerStatus.open


def test_a_click_still_being_written_at_the_deadline_is_acknowledged_and_resolves_once(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack never sends a click again, and a 503 would have the person click again on a blocker that
    may be resolved already: the click is acknowledged, and its answer follows once it is stored."""
    _command(running, "UMEMBER1", "blocker the GIS server is down", "trig-blocker")
    running.settle()
    with running.bot.store() as store:
        [blocker] = store.session.exec(select(Blocker).where(Blocker.text == "the GIS server is down")).all()
    slow_writes(monkeypatch, 2.0)
    action = {"type": "button", "action_id": "resolve_blocker", "value": str(blocker.id)}
    click = _click(running, "trig-slow-click", action)
    posted = len(running.mock.named("chat.postMessage"))
    response = running.form({"payload": json.dumps(click)})
    assert response.status_code == 200
    running.mock.wait_for("chat.postMessage", posted + 1)  # the answer, once the click is stored
    running.settle()
    with running.bot.store() as store:
        resolved = store.session.get(Blocker, blocker.id)
        assert resolved is not None and resolved.status == BlockerStatus.resolved
    [reply] = [p for p in running.mock.named("chat.postMessage") if p.params["channel"] == "D0COACH"]
    assert reply.params["text"].startswith(f"Blocker #{blocker.id} resolved")
