"""Teams end to end: activities with tokens signed by the local JWKS's key through the real server,
replies posted with a token from the local Entra to the local Bot Connector."""

import time
from datetime import UTC, timedelta

import pytest
from sqlmodel import select

from bot.core.messages import not_saved
from bot.runtime.hub import Overloaded, Unavailable, Undecided
from store.models import Blocker, BlockerStatus, OutboxMessage, Update
from tests.conftest import NOW
from tests.slack_harness import wait_until
from tests.teams_harness import (
    BETA_AAD,
    BOT,
    CHANNEL_THREAD,
    COACH,
    COACH_AAD,
    MEMBER,
    OTHER_CHANNEL,
    TENANT,
    Teams,
    installed,
    message,
    teams,
    teams_fakes,
    teams_world,
)

__all__ = ["teams", "teams_fakes", "teams_world"]


def _updates(run: Teams) -> list[Update]:
    with run.bot.store() as store:
        return list(store.session.exec(select(Update).where(Update.platform == "teams")))


def test_channel_message_records_an_update_and_replies_in_the_posts_thread(teams: Teams) -> None:
    response = teams.post(message(teams.service_url, "update: mapped 40 bus stops"))
    assert response.status_code == 200
    [post] = teams.connector.wait_for(1)
    teams.settle()
    # POST /v3/conversations/{channel;messageid=…}/activities/{the post's id}: in its thread.
    assert post.conversation == f"{CHANNEL_THREAD};messageid=1700000000001"
    assert post.reply_to == "1700000000001"
    assert post.activity["replyToId"] == "1700000000001"
    assert post.activity["from"]["id"] == BOT["id"]
    assert "recorded for Alpha" in post.activity["text"]
    # The bot's own token, from Entra's client-credentials grant.
    assert post.headers["authorization"] == "Bearer bot-token-1"
    assert teams.entra is not None and teams.entra.requests[0]["grant_type"] == "client_credentials"
    assert teams.entra.requests[0]["scope"] == "https://api.botframework.com/.default"
    [update] = _updates(teams)
    assert update.text == "mapped 40 bus stops"  # the mention is gone
    assert update.author == MEMBER


def test_the_bots_mention_is_stripped_and_other_mentions_keep_their_names(teams: Teams) -> None:
    body = message(
        teams.service_url, "update: paired with <at>Ana Lima</at> on the survey", activity_id="17002"
    )
    body["entities"].append(
        {"type": "mention", "text": "<at>Ana Lima</at>", "mentioned": {"id": "29:ana", "name": "Ana Lima"}}
    )
    assert teams.post(body).status_code == 200
    teams.connector.wait_for(1)
    teams.settle()
    assert [u.text for u in _updates(teams)] == ["paired with Ana Lima on the survey"]


def test_the_same_activity_twice_is_recorded_and_answered_once(teams: Teams) -> None:
    body = message(teams.service_url, "update: sent twice", activity_id="1700000000099")
    assert [teams.post(body).status_code for _ in range(3)] == [200, 200, 200]
    teams.connector.wait_for(1)
    teams.settle()
    time.sleep(0.3)
    assert [u.text for u in _updates(teams)] == ["sent twice"]
    assert len(teams.connector.posts) == 1
    assert teams.inbox() == 1


def test_status_is_an_adaptive_card_with_a_text_fallback(teams: Teams) -> None:
    assert teams.post(message(teams.service_url, "/cda status", activity_id="17003")).status_code == 200
    [post] = teams.connector.wait_for(1)
    card = post.card
    assert card is not None and card["type"] == "AdaptiveCard"
    assert float(card["version"]) <= 1.5
    assert card["body"][0]["text"] == "Status — Alpha"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Open blockers"] == "1"
    assert card["fallbackText"].startswith("Status — Alpha")
    assert post.activity["summary"] == "Status — Alpha"
    assert post.reply_to == "17003"  # in the thread, as the channel's own city


def test_a_coach_resolves_a_blocker_with_the_cards_button(teams: Teams) -> None:
    # The coach has the app in a personal chat; a member opens a blocker in the channel; the coach is
    # told in that chat, with a button.
    coach_chat = "a:coach-personal-chat"
    personal = installed(
        teams.service_url, conversation=coach_chat, conversation_type="personal", user=COACH_AAD
    )
    assert teams.post(personal).status_code == 200
    teams.connector.wait_for(1)  # the greeting
    assert (
        teams.post(message(teams.service_url, "blocker: no 311 export", activity_id="17010")).status_code
        == 200
    )
    teams.connector.wait_for(3)
    teams.settle()
    [opened] = [p for p in teams.connector.posts if p.card is not None]
    assert opened.conversation == coach_chat and opened.reply_to is None
    action = opened.card["actions"][0]
    assert action["type"] == "Action.Submit" and action["title"] == "Resolve"
    with teams.bot.store() as store:
        blocker = store.session.exec(select(Blocker).where(Blocker.text == "no 311 export")).one()
    # Pressing it: a message with the button's data as `value`, from the coach's personal chat.
    pressed = message(
        teams.service_url,
        "",
        activity_id="17011",
        conversation=opened.conversation,
        conversation_type="personal",
        user=COACH_AAD,
        mention=False,
        value=action["data"],
    )
    assert teams.post(pressed).status_code == 200
    assert teams.post(pressed).status_code == 200  # pressed twice, handled once
    teams.connector.wait_for(4)
    teams.settle()
    with teams.bot.store() as store:
        resolved = store.session.get(Blocker, blocker.id)
        assert resolved is not None and resolved.status == BlockerStatus.resolved
        assert resolved.resolved_by == COACH
    answer = teams.connector.to(opened.conversation)[-1]
    assert f"Blocker #{blocker.id} resolved." in answer.activity["text"]
    # The greeting, the notice and one answer.
    assert len(teams.connector.to(coach_chat)) == 3


def test_a_member_of_another_city_pressing_resolve_is_refused(teams: Teams) -> None:
    with teams.bot.store() as store:
        blocker = store.session.exec(select(Blocker).where(Blocker.text == "ALPHA-BLOCKER-TEXT")).one()
    pressed = message(
        teams.service_url,
        "",
        activity_id="17020",
        conversation=OTHER_CHANNEL,
        user=BETA_AAD,
        mention=False,
        value={"cdaAction": "resolve_blocker", "value": str(blocker.id)},
    )
    assert teams.post(pressed).status_code == 200
    [answer] = teams.connector.wait_for(1)
    teams.settle()
    # Only the one who pressed hears the answer, in their personal chat; the blocker stays open.
    assert answer.conversation == f"a:personal-29:{BETA_AAD}"
    assert "Alpha" not in answer.words and "ALPHA-BLOCKER-TEXT" not in answer.words
    with teams.bot.store() as store:
        still = store.session.get(Blocker, blocker.id)
        assert still is not None and still.status == BlockerStatus.open


def test_a_coach_view_asked_in_a_channel_goes_to_a_personal_chat(teams: Teams) -> None:
    body = message(
        teams.service_url, "/cda status", activity_id="17030", user=COACH_AAD, conversation=OTHER_CHANNEL
    )
    assert teams.post(body).status_code == 200
    teams.connector.wait_for(2)
    teams.settle()
    personal = teams.connector.to(f"a:personal-29:{COACH_AAD}")
    assert len(personal) == 1 and personal[0].card is not None
    [note] = teams.connector.to(f"{OTHER_CHANNEL};messageid=17030")
    assert "direct message" in note.activity["text"] and note.reply_to == "17030"
    created = teams.connector.created[0]["body"]
    assert created["members"] == [{"id": f"29:{COACH_AAD}"}]
    assert created["channelData"] == {"tenant": {"id": TENANT}}
    assert COACH.startswith("teams:")


def test_a_throttled_reply_is_sent_again_after_retry_after_and_delivered_once(teams: Teams) -> None:
    teams.connector.fail = [429]
    teams.connector.retry_after = 7
    assert teams.post(message(teams.service_url, "update: throttled", activity_id="17040")).status_code == 200

    def throttled() -> list[OutboxMessage]:
        return [r for r in teams.outbox() if r.kind == "reply" and r.attempts == 1 and r.status == "pending"]

    wait_until(lambda: bool(throttled()), 10, "the 429 recorded")
    [row] = throttled()
    assert row.next_attempt_at.replace(tzinfo=UTC) == NOW + timedelta(seconds=7)  # the connector's word
    assert "429" in (row.last_error or "")
    assert teams.connector.posts == []
    teams.bot.clock.set(NOW + timedelta(seconds=8))
    teams.server.hub.deliverer.wake()
    [post] = teams.connector.wait_for(1)
    teams.settle()
    assert "recorded for Alpha" in post.activity["text"]
    time.sleep(0.3)
    assert len(teams.connector.posts) == 1
    sent = teams.row(row.key, lambda r: r.status == "sent")
    assert sent.attempts == 2


def test_blockers_updates_and_the_digest_are_cards_in_a_coachs_personal_chat(teams: Teams) -> None:
    chat = "a:coach-chat"
    for number, command in enumerate(("/cda blockers", "/cda updates", "/cda digest"), start=1):
        body = message(
            teams.service_url,
            command,
            activity_id=f"1705{number}",
            conversation=chat,
            conversation_type="personal",
            user=COACH_AAD,
            mention=False,
        )
        assert teams.post(body).status_code == 200
    posts = teams.connector.wait_for(3)
    teams.settle()
    assert [p.conversation for p in posts] == [chat] * 3
    assert all(p.card is not None and p.reply_to is None for p in posts)
    words = " ".join(p.words for p in posts)
    assert "ALPHA-BLOCKER-TEXT" in words and "ALPHA-UPDATE-TEXT" in words
    assert "BETA" not in words  # Cleo coaches alpha only


def _unavailable(teams: Teams, monkeypatch: pytest.MonkeyPatch, error: Unavailable) -> None:
    async def refused(_: object) -> bool:
        raise error

    monkeypatch.setattr(teams.server.hub, "accept", refused)


def test_a_message_the_database_cannot_store_is_answered_at_once_that_nothing_was_saved(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Teams sends a failed activity again at most a couple of times, soon after: an outage outlasts
    them, and the person would never know. They are told in the post's thread, straight through the Bot
    Connector (the database is what failed), and Teams gets 200; nothing of the message is kept."""
    _unavailable(teams, monkeypatch, Unavailable("database unavailable", retry_after=5))
    response = teams.post(message(teams.service_url, "update: into the void", activity_id="17060"))
    assert response.status_code == 200
    [told] = teams.connector.wait_for(1)
    assert told.conversation == f"{CHANNEL_THREAD};messageid=17060" and told.reply_to == "17060"
    assert told.activity["text"] == not_saved("en")
    assert teams.inbox() == 0 and _updates(teams) == [] and teams.outbox() == []


def test_in_a_personal_chat_it_is_said_in_the_language_teams_names(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unavailable(teams, monkeypatch, Unavailable("database unavailable"))
    body = message(
        teams.service_url,
        "update: a la nada",
        activity_id="17061",
        conversation="a:chat",
        mention=False,
        conversation_type="personal",
    )
    body["locale"] = "es-419"
    assert teams.post(body).status_code == 200
    [told] = teams.connector.wait_for(1)
    assert told.conversation == "a:chat" and told.activity["text"] == not_saved("es")
    assert "no se guardó nada" in told.activity["text"]  # the catalog's words, not the English


def test_when_it_cannot_be_told_either_teams_gets_the_503_to_send_it_again(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unavailable(teams, monkeypatch, Unavailable("database unavailable", retry_after=5))
    teams.connector.refuse[f"{CHANNEL_THREAD};messageid=17062"] = 500
    response = teams.post(message(teams.service_url, "update: into the void", activity_id="17062"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert teams.inbox() == 0 and _updates(teams) == []


@pytest.mark.parametrize("error", ["chatter", "undecided", "overloaded"])
def test_chatter_a_message_that_may_yet_be_stored_and_overload_get_the_503_and_no_word(
    teams: Teams, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    """Chatter in a channel was never said to the bot; a message still being written may be stored
    and answered after all, so "nothing was saved" could be untrue; past capacity, a post to tell the
    person would be more work for a server that has too much already."""
    failure = {
        "chatter": Unavailable("database unavailable"),
        "undecided": Undecided("may be stored", None),
        "overloaded": Overloaded("500 messages waiting"),
    }[error]
    _unavailable(teams, monkeypatch, failure)
    body = message(teams.service_url, "next session?", activity_id="17063", mention=error != "chatter")
    assert teams.post(body).status_code == 503
    time.sleep(0.3)
    assert teams.connector.posts == []


def test_a_mention_with_nothing_else_gets_an_answer_not_silence(teams: Teams) -> None:
    body = message(teams.service_url, "", activity_id="17070")
    assert teams.post(body).status_code == 200
    [answer] = teams.connector.wait_for(1)
    teams.settle()
    assert answer.reply_to == "17070" and "/cda help" in answer.activity["text"]


def test_a_picture_alone_in_a_personal_chat_is_told_only_text_is_read(teams: Teams) -> None:
    body = message(
        teams.service_url,
        "",
        activity_id="17080",
        conversation="a:member-chat",
        conversation_type="personal",
        mention=False,
    )
    body["attachments"] = [{"contentType": "image/*", "contentUrl": "https://example.invalid/photo.png"}]
    assert teams.post(body).status_code == 200
    [answer] = teams.connector.wait_for(1)
    teams.settle()
    assert answer.conversation == "a:member-chat" and "Text only" in answer.activity["text"]
    assert teams.inbox() == 1 and _updates(teams) == []
