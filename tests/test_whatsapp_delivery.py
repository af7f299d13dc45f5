"""What goes out to WhatsApp after the reply: approved templates outside the 24-hour window, and the
delivery status Twilio reports later, kept on the outbox row where admins see it."""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from adapters.whatsapp.adapter import template_variables
from adapters.whatsapp.config import WhatsAppConfigError, content_sids
from bot.cli import app
from bot.core.messages import Reply
from scheduler.planner import plan
from store.models import OutboxMessage, OutboxReceipt
from tests.conftest import TestBot
from tests.slack_harness import wait_until
from tests.whatsapp_harness import (
    ACCOUNT_SID,
    ALPHA_NUMBER,
    GAMMA_NUMBER,
    SENDER,
    FakeTwilio,
    WhatsApp,
    fake_twilio,
    inbound,
    running_whatsapp,
    whatsapp,
    whatsapp_world,
)

__all__ = ["fake_twilio", "whatsapp", "whatsapp_world"]

EN_TEMPLATE = "HX" + "e" * 32
ES_TEMPLATE = "HX" + "5" * 32
# Gamma (Spanish) meets Thursdays 09:00 in Bogotá, 14:00 UTC: its 24-hour reminder is due Wed 14:00 UTC.
GAMMA_REMINDER_DUE = datetime.fromisoformat("2026-12-02T14:00:00+00:00")


@pytest.fixture
def with_templates(whatsapp_world: TestBot, fake_twilio: FakeTwilio) -> Iterator[WhatsApp]:
    sids = f"en:{EN_TEMPLATE}, es:{ES_TEMPLATE}"
    with running_whatsapp(whatsapp_world, fake_twilio, twilio_content_sids=sids) as running:
        yield running


def _reminders_to(run: WhatsApp, number: str) -> list[OutboxMessage]:
    return [r for r in run.outbox() if r.recipient == number and r.kind.startswith("reminder")]


def _write_at(run: WhatsApp, at: datetime, number: str, text: str) -> None:
    run.bot.clock.set(at)
    before = len(run.twilio.to(number))
    assert run.post(inbound(number, text)).status_code == 200
    wait_until(lambda: len(run.twilio.to(number)) > before, 10, "the reply")
    run.settle()


def _plan_and_send(run: WhatsApp, at: datetime) -> None:
    run.bot.clock.set(at)
    with run.bot.store() as store:
        plan(store, at)
    run.server.hub.deliverer.wake()
    run.settle()


def test_a_reminder_30_hours_after_the_last_message_goes_as_the_template_in_the_citys_language(
    with_templates: WhatsApp,
) -> None:
    _write_at(with_templates, GAMMA_REMINDER_DUE - timedelta(hours=30), GAMMA_NUMBER, "update: avance")
    _plan_and_send(with_templates, GAMMA_REMINDER_DUE)
    [row] = _reminders_to(with_templates, GAMMA_NUMBER)
    assert row.status == "sent"
    template = with_templates.twilio.to(GAMMA_NUMBER)[-1]
    assert template.form["ContentSid"] == ES_TEMPLATE  # Gamma speaks Spanish
    assert "Body" not in template.form
    assert template.form["From"] == SENDER
    variables = json.loads(template.form["ContentVariables"])
    assert set(variables) == {"1", "2"}
    assert variables["1"].startswith("Recordatorio")
    assert "GAMMA session" in variables["1"] + variables["2"]
    assert "\n" not in variables["2"] and "{soon}" not in variables["2"]


def test_a_nudge_outside_the_window_goes_as_the_template_in_the_citys_language(
    with_templates: WhatsApp,
) -> None:
    # Gamma's last update was Sat 28 Nov: seven quiet days later, its nudge is due on the next working
    # day at 10:00 in Bogotá. A member who has not written for a week is outside the window.
    monday_10 = datetime.fromisoformat("2026-12-07T15:00:00+00:00")
    _plan_and_send(with_templates, monday_10)
    [row] = [r for r in with_templates.outbox() if r.recipient == GAMMA_NUMBER and r.kind == "nudge"]
    assert row.status == "sent"
    template = with_templates.twilio.to(GAMMA_NUMBER)[-1]
    # Not the English template ("Message from cda-bot … Reply here …") around a Spanish nudge.
    assert template.form["ContentSid"] == ES_TEMPLATE
    assert json.loads(template.form["ContentVariables"])["1"].startswith("Sin avances de Gamma")


def test_inside_the_window_a_reminder_is_free_text(with_templates: WhatsApp) -> None:
    _write_at(with_templates, GAMMA_REMINDER_DUE - timedelta(hours=3), GAMMA_NUMBER, "update: avance")
    _plan_and_send(with_templates, GAMMA_REMINDER_DUE)
    [row] = _reminders_to(with_templates, GAMMA_NUMBER)
    assert row.status == "sent"
    sent = with_templates.twilio.to(GAMMA_NUMBER)[-1]
    assert "ContentSid" not in sent.form
    assert "Recordatorio" in sent.body and "en 24 horas" in sent.body


def test_without_a_template_a_message_outside_the_window_fails_saying_why(whatsapp: WhatsApp) -> None:
    _plan_and_send(whatsapp, GAMMA_REMINDER_DUE)  # this number never wrote
    [row] = _reminders_to(whatsapp, GAMMA_NUMBER)
    assert row.status == "failed" and row.attempts == 1
    assert "24-hour window" in (row.last_error or "") and "TWILIO_CONTENT_SIDS" in (row.last_error or "")
    assert whatsapp.twilio.to(GAMMA_NUMBER) == []


def _status(run: WhatsApp, sid: str, status: str, code: str | None = None) -> int:
    form = {"MessageSid": sid, "MessageStatus": status, "To": ALPHA_NUMBER, "From": SENDER}
    form |= {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01"}
    if code is not None:
        form["ErrorCode"] = code
    return run.post(form, path="/twilio/status").status_code


def _replied(run: WhatsApp, text: str) -> tuple[OutboxMessage, str]:
    _write_at(run, run.bot.clock.now(), ALPHA_NUMBER, text)
    [row] = [r for r in run.outbox() if r.status == "sent"][-1:]
    with run.bot.store() as store:
        [receipt] = store.session.exec(select(OutboxReceipt).where(OutboxReceipt.outbox_id == row.id)).all()
    assert receipt.platform_id == run.twilio.to(ALPHA_NUMBER)[-1].sid
    return row, receipt.platform_id


def test_a_status_callback_with_63016_fails_the_row_with_that_code_visible_to_an_admin(
    whatsapp: WhatsApp, db_url: str
) -> None:
    row, sid = _replied(whatsapp, "update: tested the form")
    assert _status(whatsapp, sid, "sent") == 204
    assert _status(whatsapp, sid, "failed", "63016") == 204
    failed = whatsapp.row(row.key, lambda r: r.status == "failed")
    assert failed.delivery == "failed" and failed.delivery_code == "63016"
    assert "whatsapp error 63016" in (failed.last_error or "") and "24-hour window" in (
        failed.last_error or ""
    )
    # An admin sees the code in `/cda status`; a coach sees the count; the team sees neither.
    shown = whatsapp.bot.say("console:admin", "/cda status alpha")
    assert "Failed deliveries: 1" in shown and "63016" in shown
    coach = whatsapp.bot.say("console:coach-a", "/cda status alpha")
    assert "Failed deliveries: 1" in coach and "63016" not in coach
    assert "Failed" not in whatsapp.bot.say("console:a1", "/cda status")
    listed = CliRunner().invoke(app, ["--db", db_url, "reminders", "list", "--city", "alpha", "--json"])
    [shown_row] = [r for r in json.loads(listed.output) if r["id"] == row.id]
    assert shown_row["status"] == "failed" and shown_row["delivery"] == "failed 63016"
    assert "63016" in shown_row["error"]


def test_an_error_from_create_reads_as_the_same_error_from_a_callback(whatsapp: WhatsApp) -> None:
    whatsapp.twilio.fail = [400]
    whatsapp.twilio.fail_code = 63016
    assert whatsapp.post(inbound(ALPHA_NUMBER, "update: refused at once")).status_code == 200
    wait_until(lambda: bool(whatsapp.outbox()), 10, "the reply queued")
    [row] = whatsapp.outbox()
    refused = whatsapp.row(row.key, lambda r: r.status == "failed")
    assert refused.last_error == (
        "whatsapp error 63016: outside the 24-hour window: only an approved template may go "
        "(TWILIO_CONTENT_SIDS)"
    )


def test_delivered_then_read_moves_forward_and_a_late_delivered_does_not_move_it_back(
    whatsapp: WhatsApp,
) -> None:
    row, sid = _replied(whatsapp, "update: read receipts")
    assert _status(whatsapp, sid, "delivered") == 204
    assert whatsapp.row(row.key, lambda r: r.delivery == "delivered").status == "sent"
    assert _status(whatsapp, sid, "read") == 204
    whatsapp.row(row.key, lambda r: r.delivery == "read")
    assert _status(whatsapp, sid, "delivered") == 204
    assert _status(whatsapp, sid, "queued") == 204  # says nothing the outbox keeps
    [after] = [r for r in whatsapp.outbox() if r.id == row.id]
    assert after.delivery == "read" and after.status == "sent"


def test_a_rate_limited_delivery_reported_later_is_sent_again(whatsapp: WhatsApp) -> None:
    row, sid = _replied(whatsapp, "update: throttled later")
    assert _status(whatsapp, sid, "failed", "63018") == 204
    retry = whatsapp.row(row.key, lambda r: r.status == "pending")
    assert "63018" in (retry.last_error or "")
    whatsapp.bot.clock.set(retry.next_attempt_at)
    whatsapp.server.hub.deliverer.wake()
    wait_until(lambda: len(whatsapp.twilio.to(ALPHA_NUMBER)) == 2, 10, "the second send")
    again = whatsapp.row(row.key, lambda r: r.status == "sent" and r.attempts == 2)
    assert again.delivery is None  # what Twilio says about the new message is news


def test_a_status_for_a_message_the_bot_never_sent_changes_nothing(whatsapp: WhatsApp) -> None:
    row, _ = _replied(whatsapp, "update: someone else's sid")
    assert _status(whatsapp, "SM" + "9" * 32, "failed", "63016") == 204
    [after] = [r for r in whatsapp.outbox() if r.id == row.id]
    assert after.status == "sent" and after.delivery is None


def test_template_variables_are_one_line_each_and_never_empty() -> None:
    reply = Reply(
        text="Reminder: Coaching\nCoaching starts in 24 hours.\n\nPhase:    LL2",
        title="Reminder: Coaching",
        items=["Coaching starts in 24 hours:\tTue 1 Dec", "Phase:     LL2", "x" * 2000],
    )
    variables = template_variables(reply)
    assert variables["1"] == "Reminder: Coaching"
    assert "\n" not in variables["2"] and "\t" not in variables["2"] and "     " not in variables["2"]
    assert variables["2"].startswith("• Coaching starts in 24 hours: Tue 1 Dec · • Phase: LL2")
    assert len(variables["2"]) <= 900
    assert template_variables(Reply(text="only a line"))["2"] == "only a line"


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (f"en:{EN_TEMPLATE}", {"en": EN_TEMPLATE}),
        (f" en:{EN_TEMPLATE} , es:{ES_TEMPLATE},", {"en": EN_TEMPLATE, "es": ES_TEMPLATE}),
        ("", {}),
    ],
)
def test_content_sids_are_read_per_language(value: str, wanted: dict[str, str]) -> None:
    assert content_sids(value) == wanted


@pytest.mark.parametrize(
    "value", ["fr:" + EN_TEMPLATE, "en:HX123", f"{EN_TEMPLATE}", f"en:{EN_TEMPLATE},en:{ES_TEMPLATE}"]
)
def test_bad_content_sids_are_refused_at_start(value: str) -> None:
    with pytest.raises(WhatsAppConfigError, match="TWILIO_CONTENT_SIDS"):
        content_sids(value)
