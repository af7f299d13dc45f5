"""A Mexican, Argentine or Brazilian mobile written one way on the roster and sent by Twilio the other
way (the form WhatsApp knows the phone by) is one person: answered, not told how to join, and reached
at the form it writes from. End to end, through the real server and the fake Twilio."""

from datetime import datetime, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot import admin
from bot.cli import app
from scheduler.planner import plan
from store.models import Person, Update
from tests.slack_harness import wait_until
from tests.whatsapp_harness import WhatsApp, fake_twilio, inbound, whatsapp, whatsapp_world

__all__ = ["fake_twilio", "whatsapp", "whatsapp_world"]

FORMS = [
    # (as an admin rosters it, as Twilio's `From` gives it)
    pytest.param("whatsapp:+525512345678", "whatsapp:+5215512345678", id="mexico"),
    pytest.param("whatsapp:+541123456789", "whatsapp:+5491123456789", id="argentina"),
    pytest.param("whatsapp:+5561988887777", "whatsapp:+556188887777", id="brazil"),
]


def _roster(run: WhatsApp, number: str, city: str = "alpha") -> str:
    with run.bot.store() as store:
        return admin.add_member(store, number, city, run.bot.clock.now(), "Marisol").identity


def _said(run: WhatsApp, text: str, sender: str) -> str:
    """What the bot answered `sender`, posting as Twilio would, from `sender`."""
    before = len(run.twilio.to(sender))
    assert run.post(inbound(sender, text)).status_code == 200
    wait_until(lambda: len(run.twilio.to(sender)) > before, 10, "the answer")
    run.settle()
    return run.twilio.to(sender)[-1].body


@pytest.mark.parametrize(("rostered", "from_twilio"), FORMS)
def test_a_member_rostered_in_one_form_is_answered_when_twilio_sends_the_other(
    whatsapp: WhatsApp, rostered: str, from_twilio: str
) -> None:
    stored = _roster(whatsapp, rostered)
    answer = _said(whatsapp, "update: probamos el formulario", from_twilio)
    assert "recorded for Alpha" in answer and "join" not in answer
    # The answer went to the form WhatsApp knows the phone by, and nowhere else.
    assert {s.to for s in whatsapp.twilio.sent} == {from_twilio}
    with whatsapp.bot.store() as store:
        [update] = store.session.exec(select(Update).where(Update.platform == "whatsapp")).all()
        assert update.author == stored
        assert [p.identity for p in store.session.exec(select(Person)) if p.name == "Marisol"] == [stored]


def test_a_reminder_goes_to_the_form_the_number_last_wrote_from(whatsapp: WhatsApp) -> None:
    # Gamma meets Thursdays 09:00 in Bogotá: its 24-hour reminder is due Wednesday 14:00 UTC.
    due = datetime.fromisoformat("2026-12-02T14:00:00+00:00")
    stored = _roster(whatsapp, "whatsapp:+525512345678", "gamma")
    whatsapp.bot.clock.set(due - timedelta(hours=3))
    _said(whatsapp, "update: avance", "whatsapp:+5215512345678")
    whatsapp.bot.clock.set(due)
    with whatsapp.bot.store() as store:
        plan(store, due)
    whatsapp.server.hub.deliverer.wake()
    whatsapp.settle()
    [row] = [r for r in whatsapp.outbox() if r.kind.startswith("reminder") and r.recipient == stored]
    assert row.status == "sent"
    assert [s for s in whatsapp.twilio.to("whatsapp:+5215512345678") if "Recordatorio" in s.body]
    assert whatsapp.twilio.to(stored) == []


def test_join_stop_and_the_cli_name_one_person_whichever_form(whatsapp: WhatsApp, db_url: str) -> None:
    with whatsapp.bot.store() as store:
        code = admin.add_join_code(store, "gamma", whatsapp.bot.clock.now()).code
    assert "Gamma" in _said(whatsapp, f"join {code}", "whatsapp:+5215512345678")
    assert "no te enviaré" in _said(whatsapp, "parar", "whatsapp:+5215512345678")
    with whatsapp.bot.store() as store:
        person = store.person("whatsapp:+525512345678")
        assert person is not None and person.stopped_at is not None
    # The admin types the number as people write it: the same person, already on the roster (and moved).
    result = CliRunner().invoke(
        app, ["--db", db_url, "member", "add", "whatsapp:+525512345678", "--city", "alpha"]
    )
    assert (
        result.exit_code == 0 and "moved member whatsapp:+525512345678 to alpha (was gamma)" in result.output
    )
