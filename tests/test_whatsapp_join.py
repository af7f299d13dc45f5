"""Joining from a phone with a code an admin made, and `stop`/`start`, end to end through the server
with Twilio's real client and a local fake of the Messages API."""

import json
import time
from datetime import datetime, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot import admin
from bot.cli import app
from bot.core.inbox import Dispatcher
from bot.core.messages import InboundMessage
from scheduler.planner import plan
from store.models import JoinCode, OptOut, Person, Update
from tests.conftest import NOW, TestBot
from tests.whatsapp_harness import (
    ALPHA_NUMBER,
    GAMMA_NUMBER,
    STRANGER,
    WhatsApp,
    fake_twilio,
    inbound,
    whatsapp,
    whatsapp_world,
)

__all__ = ["fake_twilio", "whatsapp", "whatsapp_world"]

SECOND_STRANGER = "whatsapp:+5511900000002"


def _code(bot: TestBot, slug: str, days: int = 14, uses: int | None = None) -> str:
    with bot.store() as store:
        return admin.add_join_code(store, slug, bot.clock.now(), days, uses).code


def _person(bot: TestBot, identity: str) -> Person | None:
    with bot.store() as store:
        return store.person(identity)


def _said(run: WhatsApp, form: dict[str, str], to: str) -> str:
    """Post `form`, wait for the one new reply to `to`, and return its text."""
    before = len(run.twilio.to(to))
    assert run.post(form).status_code == 200
    run.settle()
    sent = run.twilio.to(to)
    assert len(sent) == before + 1, [s.body for s in sent]
    return sent[-1].body


def test_a_join_code_puts_the_number_on_its_city_and_the_reply_says_how_to_stop(whatsapp: WhatsApp) -> None:
    code = _code(whatsapp.bot, "gamma")
    # As people type it: lower case, no dash.
    reply = _said(whatsapp, inbound(STRANGER, f"join {code.replace('-', '').lower()}"), STRANGER)
    person = _person(whatsapp.bot, STRANGER)
    assert person is not None and person.role == "member"
    assert "Gamma" in reply and "`stop`" in reply  # in Gamma's language, Spanish
    assert "Bienvenido" in reply or "¡Bienvenid" in reply
    # From now on the number is a member: what it posts is stored for Gamma.
    assert "Gamma" in _said(whatsapp, inbound(STRANGER, "update: primer avance"), STRANGER)
    with whatsapp.bot.store() as store:
        [update] = store.session.exec(select(Update).where(Update.author == STRANGER)).all()
        assert update.text == "primer avance"
        assert store.join_code(code).uses == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("spoil", ["expired", "revoked", "used up", "unknown"])
def test_an_expired_revoked_used_up_or_unknown_code_is_refused_and_nothing_is_stored(
    whatsapp: WhatsApp, spoil: str
) -> None:
    bot = whatsapp.bot
    code = _code(bot, "alpha", days=1, uses=1)
    if spoil == "expired":
        bot.clock.set(NOW + timedelta(days=1, seconds=1))
    elif spoil == "revoked":
        with bot.store() as store:
            admin.revoke_join_code(store, code, NOW)
    elif spoil == "used up":
        _said(whatsapp, inbound(SECOND_STRANGER, f"join {code}"), SECOND_STRANGER)
        assert _person(bot, SECOND_STRANGER) is not None
    else:
        code = "ZZZZ-ZZZZ"
    reply = _said(whatsapp, inbound(STRANGER, f"join {code}"), STRANGER)
    assert "doesn't work" in reply and "no funciona" in reply and "não funciona" in reply
    assert _person(bot, STRANGER) is None
    # Still a stranger: an update is not stored, and the join hint is what it gets.
    hint = _said(whatsapp, inbound(STRANGER, "update: SHOULD-NOT-BE-STORED"), STRANGER)
    assert "join CODE" in hint
    with bot.store() as store:
        assert store.session.exec(select(Update).where(Update.author == STRANGER)).all() == []


def test_a_member_sending_a_join_code_stays_where_they_are(whatsapp: WhatsApp) -> None:
    code = _code(whatsapp.bot, "beta")
    reply = _said(whatsapp, inbound(ALPHA_NUMBER, f"join {code}"), ALPHA_NUMBER)
    assert "already on the Alpha team" in reply
    person = _person(whatsapp.bot, ALPHA_NUMBER)
    assert person is not None
    with whatsapp.bot.store() as store:
        assert store.join_code(code).uses == 0  # type: ignore[union-attr]
        assert person.city_id == admin.city_of(store, "alpha").id


def _plan_at(bot: TestBot, when_iso: str) -> None:
    bot.clock.set(datetime.fromisoformat(when_iso))
    with bot.store() as store:
        plan(store, bot.clock.now())


def test_stop_keeps_reminders_away_but_replies_still_go_and_start_brings_them_back(
    whatsapp: WhatsApp,
) -> None:
    bot = whatsapp.bot
    # Gamma meets Thursdays 09:00 in Bogotá (14:00 UTC); its reminders: 24 hours and 1 hour before.
    assert "no te enviaré" in _said(whatsapp, inbound(GAMMA_NUMBER, "parar"), GAMMA_NUMBER)
    person = _person(bot, GAMMA_NUMBER)
    assert person is not None and person.stopped_at is not None
    # Replies to what the number says still go out.
    assert "Gamma" in _said(whatsapp, inbound(GAMMA_NUMBER, "update: sigue el trabajo"), GAMMA_NUMBER)
    _plan_at(bot, "2026-12-02T14:00:00+00:00")
    whatsapp.server.hub.deliverer.wake()
    whatsapp.settle()
    assert not [s for s in whatsapp.twilio.to(GAMMA_NUMBER) if "Recordatorio" in s.body]
    assert not [r for r in whatsapp.outbox() if r.recipient == GAMMA_NUMBER and r.kind.startswith("reminder")]

    bot.clock.set(NOW + timedelta(days=4, hours=2, minutes=5))
    assert "de nuevo" in _said(whatsapp, inbound(GAMMA_NUMBER, "start"), GAMMA_NUMBER)
    _plan_at(bot, "2026-12-03T13:00:00+00:00")  # one hour before the session
    whatsapp.server.hub.deliverer.wake()
    whatsapp.settle()
    [reminder] = [s for s in whatsapp.twilio.to(GAMMA_NUMBER) if "Recordatorio" in s.body]
    assert "GAMMA session" in reminder.body


def test_a_reminder_planned_before_stop_is_dropped_when_due(whatsapp: WhatsApp) -> None:
    bot = whatsapp.bot
    _plan_at(bot, "2026-12-02T14:00:00+00:00")  # planned (and due) while the number still wants them
    with bot.store() as store:
        store.set_stopped(GAMMA_NUMBER, bot.clock.now())
    whatsapp.server.hub.deliverer.wake()
    whatsapp.settle()
    [row] = [r for r in whatsapp.outbox() if r.recipient == GAMMA_NUMBER and r.kind.startswith("reminder")]
    assert row.status == "dropped" and row.last_error == "the recipient said stop"
    time.sleep(0.2)
    assert whatsapp.twilio.to(GAMMA_NUMBER) == []


def test_stop_outlasts_a_move_to_another_city_and_a_removal_then_a_join(
    whatsapp: WhatsApp, db_url: str
) -> None:
    """`stop` is the person's: an admin moving them, or taking them off and adding them back, does not
    turn their reminders on again."""
    bot = whatsapp.bot
    assert "no te enviaré" in _said(whatsapp, inbound(GAMMA_NUMBER, "parar"), GAMMA_NUMBER)
    runner = CliRunner()
    moved = runner.invoke(app, ["--db", db_url, "member", "add", GAMMA_NUMBER, "--city", "alpha"])
    assert moved.exit_code == 0, moved.output
    assert f"moved member {GAMMA_NUMBER} to alpha (was gamma)" in moved.output
    person = _person(bot, GAMMA_NUMBER)
    with bot.store() as store:
        assert person is not None and person.city_id == admin.city_of(store, "alpha").id
    assert person.stopped_at is not None
    again = runner.invoke(app, ["--db", db_url, "member", "add", GAMMA_NUMBER, "--city", "alpha"])
    assert again.exit_code == 1 and "already on the roster as member of alpha" in again.output
    # Moved, the number sees its new city only, from its next message, and hears its language.
    status = _said(whatsapp, inbound(GAMMA_NUMBER, "/cda status"), GAMMA_NUMBER)
    assert "Alpha" in status and "Gamma" not in status and "Status" in status

    assert runner.invoke(app, ["--db", db_url, "member", "remove", GAMMA_NUMBER]).exit_code == 0
    assert _person(bot, GAMMA_NUMBER) is None
    _said(whatsapp, inbound(GAMMA_NUMBER, f"join {_code(bot, 'gamma')}"), GAMMA_NUMBER)
    person = _person(bot, GAMMA_NUMBER)
    assert person is not None and person.stopped_at is not None
    # Gamma meets Thursdays 09:00 in Bogotá: its reminder a day before is not sent to the number.
    _plan_at(bot, "2026-12-02T14:00:00+00:00")
    whatsapp.server.hub.deliverer.wake()
    whatsapp.settle()
    assert not [s for s in whatsapp.twilio.to(GAMMA_NUMBER) if "Recordatorio" in s.body]
    # `start` still turns them on, and leaves nothing kept behind to turn them off at a later re-add.
    assert "de nuevo" in _said(whatsapp, inbound(GAMMA_NUMBER, "start"), GAMMA_NUMBER)
    with bot.store() as store:
        assert store.session.exec(select(OptOut)).all() == []


def test_stop_said_in_a_shared_channel_is_chatter_not_a_command(world: TestBot) -> None:
    # Someone saying "stop" to a colleague in a bound Slack channel, not to the bot, changes nothing.
    chatter = InboundMessage(
        platform="slack",
        message_id="Ev-stop",
        conversation="slack:T0001:C0001",
        sender="slack:T0001:U0777",
        text="stop",
        received_at=world.clock.now(),
        addressed=False,
    )
    assert Dispatcher(world.engine, world.clock).handle(chatter) == []
    # Said to the bot in the same channel, it is a command (with nothing to stop for a channel member).
    assert "Nothing changed" in world.say("slack:T0001:U0777", "stop", conversation="slack:T0001:C0001")


def test_the_cli_makes_lists_and_revokes_join_codes(world: TestBot, db_url: str) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["--db", db_url, "city", "join-code", "gamma", "--expires", "3", "--uses", "5"])
    assert made.exit_code == 0, made.output
    code = made.output.splitlines()[0]
    assert len(code) == 9 and code[4] == "-"
    assert f"join {code}" in made.output and "for 5 numbers" in made.output
    listed = runner.invoke(app, ["--db", db_url, "city", "join-codes", "gamma", "--json"])
    [row] = json.loads(listed.output)
    assert row["code"] == code and row["state"] == "active" and row["limit"] == 5 and row["uses"] == 0
    assert runner.invoke(app, ["--db", db_url, "city", "revoke-code", code.lower()]).exit_code == 0
    [row] = json.loads(runner.invoke(app, ["--db", db_url, "city", "join-codes", "--json"]).output)
    assert row["state"] == "revoked"
    again = runner.invoke(app, ["--db", db_url, "city", "revoke-code", code])
    assert again.exit_code == 1 and "revoked already" in again.output
    bad = runner.invoke(app, ["--db", db_url, "city", "join-code", "gamma", "--expires", "0"])
    assert bad.exit_code == 1 and "--expires" in bad.output
    nowhere = runner.invoke(app, ["--db", db_url, "city", "join-code", "atlantis"])
    assert nowhere.exit_code == 1
    with world.store() as store:
        assert len(store.session.exec(select(JoinCode)).all()) == 1
