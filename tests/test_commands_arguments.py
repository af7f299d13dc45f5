"""Arguments get a clear line: a number of days is a whole number from 1 to 366, and words a command
does not take are named back. Nothing is shown or run on arguments that cannot be read."""

import pytest
from typer.testing import CliRunner

from bot import admin
from bot.cli import app
from bot.core.commands import ArgumentError, parse_listing
from tests.conftest import TestBot

DAYS = "The number of days must be a whole number from 1 to 366"


@pytest.mark.parametrize(
    ("who", "text", "answer"),
    [
        ("console:coach-all", "/cda updates alpha -5", f"{DAYS}, and -5 is negative."),
        ("console:coach-all", "/cda updates Alpha 0", f"{DAYS}, not zero."),
        ("console:coach-all", "/cda updates alpha 2.5", f"{DAYS}, and '2.5' is not one."),
        ("console:a1", "/cda updates alpha -5", f"{DAYS}, and -5 is negative."),
        ("console:a1", "/cda updates -5", f"{DAYS}, and -5 is negative."),
        ("console:a1", "/cda updates 0", f"{DAYS}, not zero."),
        ("console:a1", "/cda updates -0", f"{DAYS}, not zero."),
        ("console:coach-a", "/cda quiet abc", f"{DAYS}, and 'abc' is not one."),
        ("console:coach-a", "/cda quiet -3", f"{DAYS}, and -3 is negative."),
        ("console:coach-a", "/cda quiet 0", f"{DAYS}, not zero."),
        ("console:coach-a", "/cda quiet 1,5", f"{DAYS}, and '1,5' is not one."),
        ("console:coach-a", "/cda quiet ²", f"{DAYS}, and '²' is not one."),
    ],
)
def test_a_bad_number_of_days_is_named(world: TestBot, who: str, text: str, answer: str) -> None:
    reply = world.say(who, text)
    assert reply == answer
    assert "ALPHA" not in reply and "BETA" not in reply


@pytest.mark.parametrize(
    ("who", "text", "usage", "words"),
    [
        ("console:coach-a", "/cda quiet 3 extra", "/cda quiet [days]", "'extra'"),
        ("console:coach-a", "/cda digest now please", "/cda digest", "'now', 'please'"),
        ("console:coach-all", "/cda updates alpha 5 6", "/cda updates [city] [days]", "'6'"),
        ("console:coach-all", "/cda status alpha extra", "/cda status [city]", "'extra'"),
        ("console:coach-all", "/cda status alpha 7", "/cda status [city]", "'7'"),
        ("console:coach-all", "/cda blockers alpha all again", "/cda blockers [city] [all]", "'again'"),
        ("console:a1", "/cda updates alpha lately", "/cda updates [city] [days]", "'lately'"),
        ("console:a1", "/cda blockers 4", "/cda blockers [city] [all]", "'4'"),
        ("console:a1", "/cda next alpha please", "/cda next [city]", "'please'"),
    ],
)
def test_words_a_command_does_not_take_are_named(
    world: TestBot, who: str, text: str, usage: str, words: str
) -> None:
    reply = world.say(who, text)
    assert reply.startswith(f"`{usage}` doesn't take {words}."), reply


def test_a_city_and_a_good_number_still_work(world: TestBot) -> None:
    assert "Updates in the last 3 days — Alpha" in world.say("console:coach-all", "/cda updates alpha 3")
    assert "Updates in the last 5 days — Alpha" in world.say("console:coach-all", "/cda updates 5 alpha")
    assert "Updates in the last 366 days" in world.say("console:a1", "/cda updates +99999")
    assert "in the last 30 days" in world.say("console:coach-a", "/cda quiet 30")
    assert "All blockers — Alpha" in world.say("console:coach-all", "/cda blockers alpha all")


def test_a_member_naming_another_city_with_a_bad_number_learns_nothing_of_it(world: TestBot) -> None:
    reply = world.say("console:a1", "/cda updates beta -5")
    assert reply == f"{DAYS}, and -5 is negative."


def test_parse_listing_reads_what_each_command_takes() -> None:
    assert parse_listing("riverton 30", "updates") == parse_listing("30 riverton", "updates")
    listing = parse_listing("villa esperanza all", "blockers")
    assert (listing.city, listing.include_all, listing.days) == ("villa esperanza", True, None)
    with pytest.raises(ArgumentError):
        parse_listing("riverton -5", "updates")
    with pytest.raises(ArgumentError):
        parse_listing("all", "quiet")


def test_as_without_an_identity_in_the_chat_says_what_it_needs(db_url: str) -> None:
    chat = ["chat", "--as", "console:ana", "--db", db_url]
    result = CliRunner().invoke(app, chat, input="/as\n/as   \n/quit\n")
    assert result.exit_code == 0
    assert "didn't catch" not in result.stdout
    assert result.stdout.count("identity") >= 2, result.stdout  # once for each `/as`, in some words


@pytest.mark.parametrize(
    ("who", "text", "answer"),
    [
        # Typed without its accents, on a phone or an English keyboard: it was "not one of your cities".
        ("console:coach-all", "/cda status sao jeronimo", "Status — São Jerônimo"),
        ("console:coach-all", "/cda updates Sao Jeronimo 30", "São Jerônimo"),
        # Upper case: SQLite's lower() leaves "Á" as it is, so this failed there alone.
        ("console:coach-all", "/cda status ÁVILA", "Status — Ávila"),
        ("console:coach-all", "/cda status avila", "Status — Ávila"),
        ("console:coach-all", "/cda status Sa\u0303o Jero\u0302nimo", "Status — São Jerônimo"),  # decomposed
        # A member naming their own city without accents was told they see only their own city.
        ("console:sj1", "/cda status sao jeronimo", "Situação — São Jerônimo"),
        # Two names apart by accents alone: the one typed is the one shown.
        ("console:coach-all", "/cda status san jeronimo", "Status — San Jeronimo"),
        ("console:coach-all", "/cda status san jerónimo", "Status — San Jerónimo"),
    ],
)
def test_a_city_is_named_whatever_its_accents_and_case(
    world: TestBot, who: str, text: str, answer: str
) -> None:
    with world.store() as store:
        now = world.clock.now()
        admin.add_city(store, "sao-jeronimo", "São Jerônimo", "America/Sao_Paulo", now, "BR", None, "pt")
        admin.add_city(store, "avila-es", "Ávila", "Europe/Madrid", now, "ES", None, "es")
        admin.add_city(store, "san-jeronimo-a", "San Jerónimo", "America/Bogota", now, "CO", None, "es")
        admin.add_city(store, "san-jeronimo-b", "San Jeronimo", "America/Bogota", now, "CO", None, "en")
        admin.add_member(store, "console:sj1", "sao-jeronimo", now, "Sá")
    assert answer in world.say(who, text)
