"""A mistyped command gets the command it looks like, never a guess acted on: nothing is stored."""

import uuid

import pytest
from sqlmodel import select

from bot.core.commands import NAMES, WRITES, closest, parse
from bot.core.inbox import Dispatcher
from bot.core.messages import InboundMessage
from store.models import Blocker, Update
from tests.conftest import TestBot


def _counts(bot: TestBot) -> tuple[int, int]:
    with bot.store() as store:
        return len(store.session.exec(select(Update)).all()), len(store.session.exec(select(Blocker)).all())


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("updte: tested the intake form", "`update:`"),
        ("udpate: tested the intake form", "`update:`"),
        ("Upate: tested", "`update:`"),
        ("blokcer: waiting on the 311 export", "`blocker:`"),
        ("bloker: waiting", "`blocker:`"),
        ("/cda updte tested the intake form", "`/cda update`"),
        ("/cda bloker waiting on data", "`/cda blocker`"),
        # Someone who meant to post is not answered as if they asked about sessions.
        ("/cda updte next session moved to tuesday", "`/cda update`"),
        ("updte: next session moved to tuesday", "`update:`"),
    ],
)
def test_a_mistyped_write_suggests_the_command_and_stores_nothing(
    world: TestBot, text: str, suggestion: str
) -> None:
    reply = world.say("console:a1", text)
    assert f"Did you mean {suggestion}?" in reply and "nothing was saved" in reply, reply
    assert _counts(world) == (3, 3)


@pytest.mark.parametrize(
    ("who", "text", "suggestion"),
    [
        ("console:a1", "/cda stauts", "`/cda status`"),
        ("console:a1", "/cda statsu", "`/cda status`"),
        ("console:a1", "cda stats", "`/cda status`"),
        ("console:a1", "/cda blockrs", "`/cda blockers`"),
        ("console:a1", "/cda updtes 30", "`/cda updates`"),
        ("console:a1", "/cda hlep", "`/cda help`"),
        ("console:a1", "/cda resolv 1", "`/cda resolve`"),
        ("console:coach-a", "/cda quiett", "`/cda quiet`"),
        ("console:coach-a", "/cda digset", "`/cda digest`"),
        ("console:coach-a", "/cda exprot updates", "`/cda export`"),
    ],
)
def test_a_mistyped_command_word_suggests_the_closest_command(
    world: TestBot, who: str, text: str, suggestion: str
) -> None:
    reply = world.say(who, text)
    assert reply == f"I didn't catch that. Did you mean {suggestion}?"


def test_the_suggestion_comes_in_the_speakers_language(world: TestBot) -> None:
    # Gamma speaks Spanish; the command itself is not translated.
    assert "`/cda status`" in world.say("console:g1", "/cda stauts")
    assert "`update:`" in world.say("console:g1", "updte: probamos el formulario")
    assert _counts(world) == (3, 3)


@pytest.mark.parametrize(
    ("who", "text", "answer"),
    [
        ("console:g1", "actualización: probamos el formulario", "¿Quisiste decir `update:`?"),
        ("console:g1", "Avance: probamos el formulario", "¿Quisiste decir `update:`?"),
        ("console:g1", "BLOQUEO: falta el acceso a los datos", "¿Quisiste decir `blocker:`?"),
        ("console:g1", "/cda actualizacion probamos", "¿Quisiste decir `/cda update`?"),
        ("console:g1", "/cda estado", "¿Quisiste decir `/cda status`?"),
        ("console:g1", "/cda bloqueos", "¿Quisiste decir `/cda blockers`?"),
        # Said alone, `parar` stops messages; after `/cda` it was "No te entendí", with no hint.
        ("console:g1", "/cda parar", "¿Quisiste decir `/cda stop`?"),
        ("console:g1", "/cda baja", "¿Quisiste decir `/cda stop`?"),
        ("console:g1", "/cda iniciar", "¿Quisiste decir `/cda start`?"),
        ("console:a1", "atualização: testamos o formulário", "Did you mean `update:`?"),
        ("console:a1", "/cda painel", "Did you mean `/cda dashboard`?"),
    ],
)
def test_a_command_word_in_spanish_or_portuguese_gets_the_command_and_stores_nothing(
    world: TestBot, who: str, text: str, answer: str
) -> None:
    """Members hear the bot in their city's language, and may type its commands in it: they are told
    the command to use (still in their language), and a write is not run on what may be a guess."""
    assert answer in world.say(who, text)
    assert _counts(world) == (3, 3)


@pytest.mark.parametrize(
    "text", ["/cda frobnicate", "/cda xyz", "note: call the vendor", "re: the vendor call", "hello there"]
)
def test_text_like_no_command_still_gets_the_generic_hint(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text)
    assert reply.startswith("I didn't catch that. Try") and "Did you mean" not in reply


def test_a_mistyped_command_typed_in_a_shared_channel_to_others_is_left_alone(world: TestBot) -> None:
    message = InboundMessage(
        platform="slack",
        message_id=uuid.uuid4().hex,
        conversation="slack:T0001:C0001",
        sender="slack:T0001:U0042",
        text="Updated: the slides are in the drive",
        received_at=world.clock.now(),
        addressed=False,
    )
    assert Dispatcher(world.engine, world.clock).handle(message) == []
    assert _counts(world) == (3, 3)


def test_a_question_with_a_typo_is_still_answered_not_corrected(world: TestBot) -> None:
    assert "Tue 1 Dec 2026" in world.say("console:a1", "/cda nxt")


@pytest.mark.parametrize(
    ("word", "meant"),
    [
        ("stauts", "status"),
        ("updte", "update"),
        ("blcoker", "blocker"),
        ("blockerss", "blockers"),
        ("nxt", "next"),
        ("quite", "quiet"),
        ("status", "status"),
        ("frobnicate", None),
        ("date", None),
        ("up", None),
        ("x" * 8000, None),
    ],
)
def test_closest_is_one_edit_away_or_two_for_long_names(word: str, meant: str | None) -> None:
    assert closest(word, sorted(NAMES)) == meant


def test_a_guess_is_never_parsed_as_the_write_it_looks_like() -> None:
    for text in ("updte: x", "/cda updte x", "blokcer: y", "/cda blockr y"):
        command = parse(text)
        assert command.name == "unknown" and command.suggestion is not None
        assert command.suggestion.removeprefix("/cda ").rstrip(":") in WRITES


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/cda update:we tested the form", "Update #4 recorded for Alpha."),
        ("/cda blocker:no data yet", "Blocker #4 logged for Alpha."),
        ("cda update\n- tested the form\n- met residents", "Update #4 recorded for Alpha."),
        ("/cda updates\nalpha 3", "Updates in the last 3 days — Alpha"),
    ],
)
def test_a_command_word_ended_by_a_colon_or_a_line_break_is_read(
    world: TestBot, text: str, answer: str
) -> None:
    assert world.say("console:a1", text).startswith(answer)
