"""Who may do what, and that a city's data never reaches anyone who may not see it."""

from datetime import timedelta

import pytest
from sqlmodel import select

from bot import admin
from bot.core.dispatcher import dispatch, resolve_speaker
from bot.core.messages import InboundMessage
from store.models import Blocker, BlockerStatus, InboxMessage, Role, Update
from tests.conftest import TestBot

OTHER_CITY_MARKS = ("BETA", "Beta", "GAMMA", "Gamma")

# Every command that names a city, as member a1 (of Alpha) would type it naming Beta.
NAMING_BETA = [
    "/cda blockers beta",
    "/cda blockers beta all",
    "/cda blockers Beta",
    "/cda updates beta",
    "/cda updates beta 30",
    "/cda status beta",
    "/cda next beta",
    "cda status beta",
]
COACH_COMMANDS = ["/cda quiet", "/cda quiet 3", "/cda digest", "/cda export updates", "/cda export blockers"]


@pytest.mark.parametrize("text", NAMING_BETA)
def test_member_naming_another_city_is_refused_and_sees_nothing(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text)
    assert "only see your own city" in reply
    assert not any(mark in reply for mark in OTHER_CITY_MARKS), reply


@pytest.mark.parametrize("text", NAMING_BETA)
def test_member_naming_an_unknown_city_gets_the_same_refusal(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text.replace("beta", "atlantis").replace("Beta", "Atlantis"))
    assert "only see your own city" in reply


@pytest.mark.parametrize(
    "text", ["/cda blockers", "/cda blockers all", "/cda updates", "/cda status", "/cda next"]
)
def test_member_sees_own_city_only(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text)
    assert "Alpha" in reply or "ALPHA" in reply
    assert not any(mark in reply for mark in OTHER_CITY_MARKS), reply


@pytest.mark.parametrize("text", ["/cda blockers alpha", "/cda updates Alpha 3", "/cda status ALPHA"])
def test_member_may_name_own_city(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text)
    assert "ALPHA" in reply or "Alpha" in reply
    assert "only see" not in reply


@pytest.mark.parametrize("text", COACH_COMMANDS)
def test_member_is_refused_every_coach_command(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text)
    assert "is for coaches" in reply
    assert not any(mark in reply for mark in ("ALPHA-", *OTHER_CITY_MARKS)), reply


@pytest.mark.parametrize(
    "text", ["/cda status", "/cda blockers all", "/cda updates 30", "/cda digest", "/cda quiet", "/cda next"]
)
def test_coach_sees_only_coached_cities(world: TestBot, text: str) -> None:
    world.clock.set(world.clock.now() + timedelta(days=8))  # every city has gone quiet by now
    reply = world.say("console:coach-a", text)
    assert "Alpha" in reply or "ALPHA" in reply
    assert not any(mark in reply for mark in OTHER_CITY_MARKS), reply


@pytest.mark.parametrize("kind", ["updates", "blockers"])
def test_coach_export_holds_only_coached_cities(world: TestBot, kind: str) -> None:
    (reply,) = world.send("console:coach-a", f"/cda export {kind}")
    assert reply.attachment is not None
    content = reply.attachment.content
    assert f"ALPHA-{kind[:-1].upper()}-TEXT" in content
    assert "BETA" not in content and "GAMMA" not in content
    assert content.count("\n") == 2  # header and one row


def test_coach_of_two_cities_sees_both_but_not_the_third(world: TestBot) -> None:
    reply = world.say("console:coach-ab", "/cda blockers")
    assert "ALPHA-BLOCKER-TEXT" in reply and "BETA-BLOCKER-TEXT" in reply
    assert "GAMMA" not in reply


def test_coach_of_all_and_admin_see_every_city(world: TestBot) -> None:
    for who in ("console:coach-all", "console:admin"):
        reply = world.say(who, "/cda updates")
        assert all(f"{c}-UPDATE-TEXT" in reply for c in ("ALPHA", "BETA", "GAMMA")), reply


@pytest.mark.parametrize(
    "text", ["/cda status beta", "/cda blockers beta", "/cda updates gamma", "/cda next beta"]
)
def test_coach_naming_an_uncoached_city_is_refused(world: TestBot, text: str) -> None:
    reply = world.say("console:coach-a", text)
    assert "not one of the cities you coach" in reply
    assert "BETA-" not in reply and "GAMMA-" not in reply


def test_coach_in_a_bound_channel_defaults_to_that_city(world: TestBot) -> None:
    reply = world.say("console:coach-all", "/cda blockers", conversation="slack:T0001:C0001")
    assert "ALPHA-BLOCKER-TEXT" in reply and "BETA" not in reply


def _blocker_id(bot: TestBot, city_mark: str) -> int:
    with bot.store() as store:
        found = store.session.exec(select(Blocker).where(Blocker.text == f"{city_mark}-BLOCKER-TEXT")).one()
        assert found.id is not None
        return found.id


def _status(bot: TestBot, blocker_id: int) -> str:
    with bot.store() as store:
        blocker = store.blocker(blocker_id)
        assert blocker is not None
        return blocker.status


@pytest.mark.parametrize("who", ["console:a1", "console:coach-a"])
def test_resolving_another_citys_blocker_is_refused_and_changes_nothing(world: TestBot, who: str) -> None:
    beta = _blocker_id(world, "BETA")
    reply = world.say(who, f"/cda resolve {beta} sneaky")
    assert f"no blocker #{beta}" in reply
    assert _status(world, beta) == BlockerStatus.open
    # The answer for a blocker that exists elsewhere equals the one for a blocker that does not exist.
    assert world.say(who, "/cda resolve 9999").replace("9999", "N") == reply.replace(str(beta), "N")


@pytest.mark.parametrize("who", ["console:a1", "console:coach-a", "console:admin"])
def test_member_coach_and_admin_resolve_own_city_blocker(world: TestBot, who: str) -> None:
    alpha = _blocker_id(world, "ALPHA")
    assert f"Blocker #{alpha} resolved" in world.say(who, f"/cda resolve #{alpha} data arrived")
    with world.store() as store:
        blocker = store.blocker(alpha)
        assert blocker is not None
        assert (blocker.status, blocker.resolved_by, blocker.resolution_note) == (
            "resolved",
            who,
            "data arrived",
        )
        assert blocker.resolved_at == world.clock.now()
    assert "already resolved" in world.say(who, f"/cda resolve {alpha}")


@pytest.mark.parametrize("who", ["console:coach-a", "console:admin"])
@pytest.mark.parametrize("text", ["update: coach news", "blocker: coach problem"])
def test_coaches_and_admins_cannot_post_updates_or_blockers(world: TestBot, who: str, text: str) -> None:
    assert "posted by city team members" in world.say(who, text)
    with world.store() as store:
        assert "coach" not in " ".join(u.text for u in store.session.exec(select(Update)))


@pytest.mark.parametrize(
    "text", ["update: hello", "blocker: help", "/cda status", "/cda blockers", "/cda quiet", "/cda resolve 1"]
)
def test_unknown_sender_gets_nothing_and_stores_nothing(world: TestBot, text: str) -> None:
    reply = world.say("console:stranger", text)
    assert "don't know which city" in reply
    assert not any(mark in reply for mark in ("ALPHA", "Alpha", *OTHER_CITY_MARKS))
    with world.store() as store:
        assert len(store.session.exec(select(Update)).all()) == 3
        assert len(store.session.exec(select(Blocker)).all()) == 3


def test_anyone_in_a_bound_channel_counts_as_its_member(world: TestBot) -> None:
    reply = world.say("slack:T0001:U0999", "update: from the channel", conversation="slack:T0001:C0001")
    assert "recorded for Alpha" in reply
    assert "only see your own city" in world.say(
        "slack:T0001:U0999", "/cda status beta", conversation="slack:T0001:C0001"
    )


def test_whatsapp_number_must_be_on_the_roster(world: TestBot) -> None:
    reply = world.say("whatsapp:+573009998877", "update: hola")
    assert "not on a City Data Alliance city team yet" in reply and "Ask your coach" in reply
    assert world.say("whatsapp:+573009998877", "update: again") == ""  # told once a day
    with world.store() as store:
        assert len(store.session.exec(select(Update)).all()) == 3
        # Nothing the number sent is kept, not even in the inbox.
        assert store.session.exec(select(InboxMessage).where(InboxMessage.platform == "whatsapp")).all() == []


def test_help_lists_what_each_role_may_do(world: TestBot) -> None:
    member, coach = world.say("console:a1", "/cda help"), world.say("console:coach-a", "help")
    assert "update:" in member and "/cda quiet" not in member
    assert "/cda quiet" in coach and "/cda digest" in coach and "update:" not in coach


# Schedule questions naming Beta, as member a1 (of Alpha) would ask them.
ASKING_ABOUT_BETA = [
    "when is the next session in Beta?",
    "beta's next session?",
    "what's on this week for beta?",
    "when is the last session in Beta?",
    "¿cuándo es la próxima sesión de Beta?",
    "quando é a próxima sessão em Beta?",
]


@pytest.mark.parametrize("text", ASKING_ABOUT_BETA)
def test_member_asking_about_another_citys_schedule_is_refused_and_sees_nothing(
    world: TestBot, text: str
) -> None:
    (reply,) = world.send("console:a1", text)
    assert "only see your own city" in reply.text
    assert not any(mark in reply.text for mark in OTHER_CITY_MARKS), reply.text
    assert "ALPHA session" not in reply.text  # not the member's own city's answer in its place either
    assert reply.about == [1]


@pytest.mark.parametrize("text", ASKING_ABOUT_BETA)
def test_coach_asking_about_an_uncoached_city_is_refused(world: TestBot, text: str) -> None:
    reply = world.say("console:coach-a", text)
    assert "not one of the cities you coach" in reply
    assert "BETA session" not in reply and "ALPHA session" not in reply


@pytest.mark.parametrize("text", ASKING_ABOUT_BETA)
def test_coach_asking_about_a_coached_city_gets_that_city_named(world: TestBot, text: str) -> None:
    (reply,) = world.send("console:coach-ab", text)
    assert "Beta" in reply.text and "BETA session" in reply.text, reply.text
    assert "Alpha" not in reply.text and "ALPHA" not in reply.text, reply.text
    assert reply.about == [2]


def test_coach_asking_in_a_bound_channel_about_another_city_gets_it_privately(world: TestBot) -> None:
    message = InboundMessage(
        platform="slack",
        message_id="ask-beta",
        conversation="slack:T0001:C0001",
        sender="slack:T0001:UCOACH",
        text="when is the next session in Beta?",
        received_at=world.clock.now(),
    )
    with world.store() as store:
        admin.add_coach(store, "slack:T0001:UCOACH", [], world.clock.now())
    with world.store() as store:
        speaker, channel = resolve_speaker(store, message)
        outgoing = dispatch(store, message, world.clock.now())
    assert channel is not None and channel.slug == "alpha" and speaker.role == "coach"
    answers = [o for o in outgoing if "BETA session" in o.reply.text]
    assert [o.recipient for o in answers] == ["slack:T0001:UCOACH"]  # never the Alpha channel
    assert answers[0].reply.about == [2]


@pytest.mark.parametrize("text", ["when is our next session?", "what's on this week?", "/cda next"])
def test_a_coach_without_cities_asking_about_sessions_is_told_so(world: TestBot, text: str) -> None:
    with world.store() as store:
        admin.add_coach(store, "console:coach-d", ["gamma"], world.clock.now())
        admin.remove_person(store, "console:coach-d", Role.coach, world.clock.now(), ["gamma"])
    assert world.say("console:coach-d", text).startswith("You don't coach any city yet")
