"""Unprompted messages on Teams: the reference stored at installation outlives a restart, reminders
reach a channel and a personal chat through it, and a conversation the bot was removed from fails
for good, with the reason where `reminders list` shows it."""

from bot.core.audience import NOT_SENT_PRIVATELY
from bot.core.i18n import translator
from tests.conftest import NOW, TestBot, due_message
from tests.teams_harness import (
    APP_ID,
    BETA_AAD,
    BETA_MEMBER,
    BOT,
    CHANNEL,
    CHANNEL_THREAD,
    MEMBER,
    MEMBER_AAD,
    TENANT,
    Entra,
    FakeConnector,
    OpenId,
    installed,
    message,
    running_teams,
    teams_fakes,
    teams_world,
)

__all__ = ["teams_fakes", "teams_world"]

PERSONAL_CHAT = "a:member-personal-chat"


def _plan(bot: TestBot, key: str, recipient: str, text: str) -> None:
    with bot.store() as store:
        store.enqueue(due_message(key, recipient, NOW, text, kind="reminder_24h"))


def test_install_stores_the_reference_and_greets_with_the_bind_line(
    teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]
) -> None:
    connector, openid, entra = teams_fakes
    with running_teams(teams_world, connector, openid, entra) as teams:
        other = "19:new-team-general@thread.tacv2"
        assert teams.post(installed(teams.service_url, conversation=other)).status_code == 200
        assert teams.post(installed(teams.service_url, conversation=other)).status_code == 200  # again
        [greeting] = connector.wait_for(1)
        teams.settle()
    assert greeting.conversation == other and greeting.reply_to is None
    assert f"cda-bot bind teams:{TENANT}:{other} --city SLUG" in greeting.activity["text"]
    assert len(connector.posts) == 1
    with teams_world.store() as store:
        reference = store.reference(f"teams:{TENANT}:{other}")
    # The protocol's own camelCase JSON, as any Bot Framework SDK reads it.
    assert reference is not None
    assert reference["serviceUrl"] == connector.base_url
    assert reference["conversation"]["id"] == other
    assert reference["conversation"]["tenantId"] == TENANT
    assert reference["bot"]["id"] == BOT["id"]
    assert reference["channelId"] == "msteams"
    assert APP_ID in reference["bot"]["id"]


def test_after_a_restart_reminders_reach_a_channel_and_a_personal_chat(
    teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]
) -> None:
    connector, openid, entra = teams_fakes
    with running_teams(teams_world, connector, openid, entra) as teams:
        assert teams.post(installed(teams.service_url)).status_code == 200
        personal = installed(
            teams.service_url, conversation=PERSONAL_CHAT, conversation_type="personal", activity_id="i-2"
        )
        assert teams.post(personal).status_code == 200
        connector.wait_for(2)  # the two greetings
        teams.settle()
    [personal_greeting] = connector.to(PERSONAL_CHAT)
    assert MEMBER in personal_greeting.activity["text"]  # the person's identity, for the roster
    connector.posts.clear()
    # A new process: nothing in memory, only what the database kept.
    _plan(teams_world, "reminder|channel", CHANNEL, "Your session starts tomorrow")
    _plan(teams_world, "reminder|person", MEMBER, "Your session starts tomorrow (personal)")
    with running_teams(teams_world, connector, openid, entra) as teams:
        teams.server.hub.deliverer.wake()
        connector.wait_for(2)
        sent = [
            teams.row(key, lambda r: r.status == "sent") for key in ("reminder|channel", "reminder|person")
        ]
        rows = {r.key: r for r in sent}
    [to_channel] = connector.to(CHANNEL_THREAD)
    assert to_channel.reply_to is None and to_channel.activity["text"] == "Your session starts tomorrow"
    [to_person] = connector.to(PERSONAL_CHAT)
    assert "(personal)" in to_person.activity["text"]
    assert to_person.headers["authorization"].startswith("Bearer bot-token-")
    assert rows["reminder|channel"].status == "sent" and rows["reminder|person"].status == "sent"


def test_a_conversation_the_bot_was_removed_from_fails_for_good(
    teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]
) -> None:
    connector, openid, entra = teams_fakes
    with running_teams(teams_world, connector, openid, entra) as teams:
        assert teams.post(installed(teams.service_url)).status_code == 200
        connector.wait_for(1)
        teams.settle()
        removed = installed(teams.service_url, removed=True, activity_id="remove-1")
        assert teams.post(removed).status_code == 200
        _plan(teams_world, "reminder|after-removal", CHANNEL, "Nobody will read this")
        teams.server.hub.deliverer.wake()
        row = teams.row("reminder|after-removal", lambda r: r.attempts >= 1 and r.status != "sending")
    assert row.status == "failed" and row.attempts == 1
    assert "removed" in (row.last_error or "")
    assert len(connector.posts) == 1  # the greeting only


def test_a_person_the_bot_has_never_met_is_retried_not_dropped(
    teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]
) -> None:
    connector, openid, entra = teams_fakes
    stranger = f"teams:{TENANT}:dddddddd-0000-4000-8000-000000000004"
    _plan(teams_world, "notice|stranger", stranger, "A blocker was logged")
    with running_teams(teams_world, connector, openid, entra) as teams:
        teams.server.hub.deliverer.wake()
        row = teams.row("notice|stranger", lambda r: r.attempts >= 1 and r.status != "sending")
    assert row.status == "pending" and row.attempts == 1
    assert "no conversation" in (row.last_error or "")
    assert MEMBER_AAD not in stranger


def test_a_personal_chat_reached_as_the_person_and_as_the_chat_keeps_to_one_limit(
    teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]
) -> None:
    # A personal chat is one Teams conversation under two names: the chat's (the answers to what is
    # said there) and the person's (reminders, notices, private answers). Teams counts its limit,
    # 7 a second, per conversation, whichever name a message went under.
    connector, openid, entra = teams_fakes
    with running_teams(teams_world, connector, openid, entra) as teams:
        personal = installed(teams.service_url, conversation=PERSONAL_CHAT, conversation_type="personal")
        assert teams.post(personal).status_code == 200
        connector.wait_for(1)  # the greeting
        teams.settle()
        connector.posts.clear()
        for number in range(7):
            _plan(teams_world, f"reminder|person|{number}", MEMBER, f"Reminder {number}")
        teams.server.hub.deliverer.wake()
        for number in range(7):
            said = message(
                teams.service_url,
                "/cda help",
                activity_id=f"17100{number}",
                conversation=PERSONAL_CHAT,
                conversation_type="personal",
                mention=False,
            )
            assert teams.post(said).status_code == 200
        posts = connector.wait_for(14, timeout=15)
        teams.settle()
    arrivals = sorted(p.at for p in posts if p.conversation == PERSONAL_CHAT)
    assert len(arrivals) == 14
    busiest = max(sum(1 for t in arrivals if first <= t < first + 1.0) for first in arrivals)
    assert busiest <= 7


def test_a_person_who_removed_the_app_from_their_chat_is_told_in_the_thread_not_sent_there(
    teams_world: TestBot, teams_fakes: tuple[FakeConnector, OpenId, Entra]
) -> None:
    """Ben (beta) asks in alpha's channel for his city's status, which alpha's channel may not see. He
    removed the app from his personal chat, which is never written over unasked: the thread is told
    the answer cannot go to him directly, instead of "I've sent you the answer in a direct message"
    beside an answer that fails for good unseen."""
    connector, openid, entra = teams_fakes
    with running_teams(teams_world, connector, openid, entra) as teams:
        chat = {"conversation": "a:ben-personal-chat", "conversation_type": "personal", "user": BETA_AAD}
        assert teams.post(installed(teams.service_url, **chat, activity_id="ben-in")).status_code == 200
        connector.wait_for(1)  # the greeting
        removed = installed(teams.service_url, **chat, removed=True, activity_id="ben-out")
        assert teams.post(removed).status_code == 200
        teams.settle()
        connector.posts.clear()
        asked = message(teams.service_url, "/cda status", activity_id="ben-asks", user=BETA_AAD)
        assert teams.post(asked).status_code == 200
        [told] = connector.wait_for(1)
        teams.settle()
        assert told.reply_to == "ben-asks"
        assert told.activity["text"] == translator("en").gettext(NOT_SENT_PRIVATELY)
        assert len(connector.posts) == 1  # nothing tried toward his removed chat
        assert [row.key for row in teams.outbox() if row.recipient == BETA_MEMBER] == []
