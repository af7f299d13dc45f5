"""WhatsApp end to end: forms signed as Twilio signs them through the real server, replies posted by
twilio's async client to the local fake of the Messages API."""

import asyncio
import io
import json
import logging
import time
from datetime import UTC, timedelta
from xml.etree import ElementTree

import pytest
from sqlmodel import select

from adapters.whatsapp.adapter import WhatsAppAdapter
from bot.core.clock import FixedClock
from bot.core.messages import not_saved
from bot.runtime import logs
from bot.runtime.hub import Hub, Unavailable
from store.models import OutboxMessage, Update
from tests.conftest import NOW
from tests.platform_run import lost_write, slow_writes
from tests.slack_harness import wait_until
from tests.whatsapp_harness import (
    ACCOUNT_SID,
    ALPHA_NUMBER,
    GAMMA_NUMBER,
    PUBLIC_BASE_URL,
    SENDER,
    STRANGER,
    FakeTwilio,
    WhatsApp,
    fake_twilio,
    inbound,
    running_whatsapp,
    sign,
    whatsapp,
    whatsapp_world,
)

__all__ = ["fake_twilio", "whatsapp", "whatsapp_world"]


def _updates(run: WhatsApp) -> list[Update]:
    with run.bot.store() as store:
        return list(store.session.exec(select(Update).where(Update.platform == "whatsapp")))


def test_a_rostered_number_posts_an_update_and_gets_its_reply_through_the_messages_api(
    whatsapp: WhatsApp,
) -> None:
    response = whatsapp.post(inbound(ALPHA_NUMBER, "update: tested the intake form"))
    assert response.status_code == 200
    # Empty TwiML at once: the reply goes through the REST API, not the webhook's answer.
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.endswith("<Response></Response>")
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert sent.account == ACCOUNT_SID
    assert sent.form["To"] == ALPHA_NUMBER and sent.form["From"] == SENDER
    assert "recorded for Alpha" in sent.body
    assert sent.form["StatusCallback"] == f"{PUBLIC_BASE_URL}/twilio/status"
    [update] = _updates(whatsapp)
    assert update.text == "tested the intake form"
    assert update.author == ALPHA_NUMBER
    [row] = whatsapp.outbox()
    assert row.status == "sent"


def test_a_message_and_its_reply_log_one_line_of_ours_and_none_of_twilios_headers(
    whatsapp: WhatsApp,
) -> None:
    """twilio's client logs each request and answer at INFO, headers and all: eleven lines a message,
    which at volume buried the server's own log."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure(stream=stream)
    try:
        assert whatsapp.post(inbound(ALPHA_NUMBER, "update: logs stay readable")).status_code == 200
        whatsapp.twilio.wait_for(1)
        whatsapp.settle()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert not [e for e in entries if e["logger"].startswith("twilio")]
    assert [e["message"] for e in entries if e["logger"] == "cda_bot.whatsapp"] == ["whatsapp message sent"]


def test_a_forged_or_missing_signature_gets_403_and_nothing_is_stored(whatsapp: WhatsApp) -> None:
    form = inbound(ALPHA_NUMBER, "update: forged")
    assert whatsapp.post(form, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    assert whatsapp.post(form, signature=None).status_code == 403
    # Signed with another token, and signed over a form one field of which was changed afterwards.
    other = sign(f"{PUBLIC_BASE_URL}/twilio/whatsapp", form, token="someone-elses-token")
    assert whatsapp.post(form, signature=other).status_code == 403
    good = sign(f"{PUBLIC_BASE_URL}/twilio/whatsapp", form)
    tampered = {**form, "Body": "update: tampered"}
    assert whatsapp.post(tampered, signature=good).status_code == 403
    # Signed over the address the server listens on, not the public one Twilio calls.
    local = sign(f"{whatsapp.url}/twilio/whatsapp", form)
    assert whatsapp.post(form, signature=local).status_code == 403
    time.sleep(0.2)
    assert whatsapp.inbox_count() == 0 and _updates(whatsapp) == [] and whatsapp.outbox() == []
    assert whatsapp.twilio.sent == []


def test_a_field_twilio_adds_without_notice_is_signed_and_accepted(whatsapp: WhatsApp) -> None:
    form = inbound(ALPHA_NUMBER, "update: with a new field", ChannelMetadata='{"type":"whatsapp"}')
    assert whatsapp.post(form).status_code == 200
    whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert [u.text for u in _updates(whatsapp)] == ["with a new field"]


def test_behind_a_proxy_the_signed_public_url_counts_not_the_forwarded_one(whatsapp: WhatsApp) -> None:
    form = inbound(ALPHA_NUMBER, "update: through the proxy")
    response = whatsapp.post(form, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200
    whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert len(_updates(whatsapp)) == 1


@pytest.mark.parametrize("public", ["https://bot.example.org:8443", "https://bot.example.org/base"])
def test_a_public_base_url_with_a_port_or_a_path_is_what_is_signed(
    whatsapp_world: object, fake_twilio: FakeTwilio, public: str
) -> None:
    with running_whatsapp(whatsapp_world, fake_twilio, public_base_url=public) as run:  # type: ignore[arg-type]
        assert run.post(inbound(ALPHA_NUMBER, "update: port or path")).status_code == 200
        fake_twilio.wait_for(1)
        run.settle()
        assert len(_updates(run)) == 1
        forged = sign(f"{PUBLIC_BASE_URL}/twilio/whatsapp", inbound(ALPHA_NUMBER, "x"))
        assert run.post(inbound(ALPHA_NUMBER, "x"), signature=forged).status_code == 403


def test_the_same_message_sid_twice_is_stored_and_answered_once(whatsapp: WhatsApp) -> None:
    form = inbound(ALPHA_NUMBER, "update: sent twice", sid="SM" + "1" * 32)
    assert whatsapp.post(form).status_code == 200
    assert whatsapp.post(form).status_code == 200
    whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    time.sleep(0.3)
    assert len(whatsapp.twilio.sent) == 1
    assert len(_updates(whatsapp)) == 1
    assert whatsapp.inbox_count() == 1


def test_a_signed_form_split_again_with_its_message_sid_cut_short_is_no_new_message(
    whatsapp: WhatsApp,
) -> None:
    url = f"{PUBLIC_BASE_URL}/twilio/whatsapp"
    form = inbound(ALPHA_NUMBER, "update: said once", sid="SM" + "ab" * 16)
    signature = sign(url, form)
    assert whatsapp.post(form, signature=signature).status_code == 200
    whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    # Twilio signs the names and values run together in the names' order: whoever saw one signed
    # request can split that run again, the MessageSid cut short and the rest one field's name (a
    # lower-case letter sorts after every name Twilio sends), under the very same signature.
    names = sorted(form)
    before = names[: names.index("MessageSid")]
    run = "".join(name + form[name] for name in names)
    head = "".join(name + form[name] for name in before) + "MessageSid"
    cut = "SMa"
    replay = {**{name: form[name] for name in before}, "MessageSid": cut, run[len(head) + len(cut) :]: ""}
    assert sign(url, replay) == signature
    response = whatsapp.post(replay, signature=signature)
    assert response.status_code == 400, response.text
    whatsapp.settle()
    time.sleep(0.3)
    assert [u.text for u in _updates(whatsapp)] == ["said once"]
    assert whatsapp.inbox_count() == 1
    assert len(whatsapp.twilio.sent) == 1


def test_a_message_to_another_number_of_the_account_is_neither_stored_nor_answered(
    whatsapp: WhatsApp,
) -> None:
    """The account's staging number shares this webhook: what a member writes to it is signed with the
    same token, yet is not written to this bot's number. It is not recorded for Alpha, nor answered from
    the number they did not write to; the same member writing to the bot's own number is."""
    elsewhere = inbound(ALPHA_NUMBER, "update: TO-THE-STAGING-NUMBER", To="whatsapp:+15005550006")
    response = whatsapp.post(elsewhere)
    assert response.status_code == 200 and response.text.endswith("<Response></Response>")
    assert whatsapp.post(inbound(ALPHA_NUMBER, "update: to the bot")).status_code == 200
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert "recorded for Alpha" in sent.body
    assert [u.text for u in _updates(whatsapp)] == ["to the bot"]
    assert whatsapp.inbox_count() == 1


def test_an_unknown_number_is_told_how_to_join_and_nothing_it_sent_is_stored(whatsapp: WhatsApp) -> None:
    assert whatsapp.post(inbound(STRANGER, "update: SECRET-FROM-A-STRANGER")).status_code == 200
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert sent.to == STRANGER
    assert "coach" in sent.body  # English, Spanish and Portuguese: the bot cannot know theirs
    assert "Pide a tu coach" in sent.body and "Peça ao seu coach" in sent.body
    assert whatsapp.inbox_count() == 0 and _updates(whatsapp) == []
    rows = whatsapp.outbox()
    assert all("SECRET-FROM-A-STRANGER" not in str(r.payload) for r in rows)
    # A stranger's further messages that day cost no further reply.
    assert whatsapp.post(inbound(STRANGER, "hello?")).status_code == 200
    whatsapp.settle()
    time.sleep(0.2)
    assert len(whatsapp.twilio.sent) == 1


def test_a_strangers_photo_is_kept_nowhere_not_even_its_address_beside_the_join_hint(
    whatsapp: WhatsApp,
) -> None:
    photo = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME-STRANGERS-PHOTO"
    assert whatsapp.post(inbound(STRANGER, "", media=[photo])).status_code == 200
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert sent.to == STRANGER and "join" in sent.body
    assert whatsapp.inbox_count() == 0
    [hint] = whatsapp.outbox()
    # Twilio serves a media URL to whoever has it (unless the account asks for its credentials).
    assert "ME-STRANGERS-PHOTO" not in json.dumps([hint.payload, hint.context])


def test_a_photo_gets_text_only_for_now_and_its_caption_is_still_handled(whatsapp: WhatsApp) -> None:
    form = inbound(ALPHA_NUMBER, "update: photo of the form", media=["https://api.twilio.com/media/ME1"])
    assert whatsapp.post(form).status_code == 200
    sent = whatsapp.twilio.wait_for(2)
    whatsapp.settle()
    bodies = " | ".join(s.body for s in sent)
    assert "Text only for now" in bodies and "recorded for Alpha" in bodies
    [media] = [r for r in whatsapp.outbox() if "Text only" in r.payload["text"]]
    assert media.context is not None and media.context["media"] == ["https://api.twilio.com/media/ME1"]


def test_an_empty_body_gets_the_help_hint(whatsapp: WhatsApp) -> None:
    assert whatsapp.post(inbound(GAMMA_NUMBER, "")).status_code == 200
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert "/cda help" in sent.body


def _many_updates(whatsapp: WhatsApp) -> None:
    """Enough of alpha's updates that `/cda updates` answers in several WhatsApp messages."""
    with whatsapp.bot.store() as store:
        now = whatsapp.bot.clock.now()
        for n in range(40):
            store.session.add(
                Update(
                    city_id=store.city_by_slug("alpha").id,  # type: ignore[union-attr]
                    author=ALPHA_NUMBER,
                    platform="whatsapp",
                    text=f"UPDATE-{n:02d} " + "mapped the bus stops and checked the intake form. " * 2,
                    created_at=now - timedelta(minutes=n + 1),
                )
            )


def test_a_long_reply_goes_out_in_parts_of_at_most_1600_characters_in_order(whatsapp: WhatsApp) -> None:
    _many_updates(whatsapp)
    assert whatsapp.post(inbound(ALPHA_NUMBER, "/cda updates")).status_code == 200
    whatsapp.settle()
    sent = whatsapp.twilio.to(ALPHA_NUMBER)
    assert len(sent) >= 3
    assert all(len(s.body) <= 1600 for s in sent)
    # Cut at line boundaries: every part but the first starts with a whole item.
    assert all(s.body.startswith("• #") for s in sent[1:])
    text = "\n".join(s.body for s in sent)
    # The listing shows the newest ones (the handler caps it); the parts keep its order.
    positions = [text.index(f"UPDATE-{n:02d}") for n in range(20)]
    assert positions == sorted(positions)  # newest first, in order across the parts


def test_a_long_reply_cut_short_goes_on_from_the_next_part_when_another_process_retries_it(
    whatsapp: WhatsApp,
) -> None:
    """Twilio takes part 1 and fails part 2: the parts that went out are kept on the row, so the retry
    sends the rest only, even from a process that never saw the first attempt (another replica, or
    this server after a restart)."""
    _many_updates(whatsapp)
    whatsapp.twilio.fail = [0, 500]  # the first part accepted, the second refused
    assert whatsapp.post(inbound(ALPHA_NUMBER, "/cda updates")).status_code == 200

    def cut_short() -> list[OutboxMessage]:
        return [r for r in whatsapp.outbox() if r.attempts == 1 and r.status == "pending" and r.last_error]

    wait_until(lambda: bool(cut_short()), 10, "the failed part recorded")
    [row] = cut_short()
    [first] = whatsapp.twilio.sent
    with whatsapp.bot.store() as store:
        assert row.id is not None and store.parts_sent(row.id) == [first.sid]
    config = whatsapp.server.hub.adapters["whatsapp"].config  # type: ignore[attr-defined]

    async def retry_elsewhere() -> None:
        due = row.next_attempt_at.replace(tzinfo=UTC)
        hub = Hub(whatsapp.bot.engine, FixedClock(due + timedelta(seconds=1)))
        adapter = WhatsAppAdapter(config, hub)
        hub.register(adapter)
        await adapter.start()
        try:
            assert (await hub.deliver_due()).sent == [row.id]
        finally:
            await adapter.stop()

    asyncio.run(retry_elsewhere())
    sent = whatsapp.twilio.to(ALPHA_NUMBER)
    assert len(sent) >= 3 and sent[0].sid == first.sid
    assert len({s.body for s in sent}) == len(sent)  # no part twice
    text = "\n".join(s.body for s in sent)
    positions = [text.index(f"UPDATE-{n:02d}") for n in range(20)]
    assert positions == sorted(positions)  # the whole listing, in order, once
    done = whatsapp.row(row.key, lambda r: r.status == "sent")
    assert done.attempts == 2
    with whatsapp.bot.store() as store:
        assert store.parts_sent(row.id) == [s.sid for s in sent]  # a later status finds every part


def test_a_429_then_201_is_delivered_once_after_retry_after(whatsapp: WhatsApp) -> None:
    whatsapp.twilio.fail = [429]
    whatsapp.twilio.retry_after = 7
    assert whatsapp.post(inbound(ALPHA_NUMBER, "update: throttled")).status_code == 200

    def throttled() -> list[OutboxMessage]:
        return [r for r in whatsapp.outbox() if r.attempts == 1 and r.status == "pending"]

    wait_until(lambda: bool(throttled()), 10, "the 429 recorded")
    [row] = throttled()
    assert row.next_attempt_at.replace(tzinfo=UTC) == NOW + timedelta(seconds=7)  # Twilio's word
    assert "429" in (row.last_error or "")
    assert whatsapp.twilio.sent == []
    whatsapp.bot.clock.set(NOW + timedelta(seconds=8))
    whatsapp.server.hub.deliverer.wake()
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    assert "recorded for Alpha" in sent.body
    time.sleep(0.3)
    assert len(whatsapp.twilio.sent) == 1
    assert whatsapp.row(row.key, lambda r: r.status == "sent").attempts == 2


def test_a_bad_number_fails_for_good_without_retrying(whatsapp: WhatsApp) -> None:
    whatsapp.twilio.fail = [400]
    whatsapp.twilio.fail_code = 21211
    assert whatsapp.post(inbound(ALPHA_NUMBER, "update: to a bad number")).status_code == 200
    wait_until(lambda: bool(whatsapp.outbox()), 10, "the reply queued")
    [queued] = whatsapp.outbox()
    row = whatsapp.row(queued.key, lambda r: r.status == "failed")
    assert "21211" in (row.last_error or "")
    assert row.attempts == 1


def test_a_message_that_could_not_be_stored_is_answered_that_nothing_was_saved(
    whatsapp: WhatsApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twilio does not send a message again after a 503 (unless its URL asks, and then for 15 s), so
    the sender is told in the answer's TwiML, which Twilio delivers, in the program's three languages."""

    async def unavailable(_: object) -> bool:
        raise Unavailable("database unavailable", retry_after=5)

    monkeypatch.setattr(whatsapp.server.hub, "accept", unavailable)
    response = whatsapp.post(inbound(ALPHA_NUMBER, "update: <into> the void & back"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    said = ElementTree.fromstring(response.text).findall("Message")
    assert [m.text for m in said] == [not_saved()]
    assert "nothing was saved" in said[0].text and "no se guardó nada" in said[0].text  # type: ignore[operator]
    assert "nada foi salvo" in said[0].text  # type: ignore[operator]
    assert whatsapp.inbox_count() == 0 and _updates(whatsapp) == []


def test_past_capacity_a_message_refused_at_the_door_is_answered_that_nothing_was_saved(
    whatsapp: WhatsApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before its body is read, as every platform's is past capacity: a 503 would lose it
    without a word (Twilio does not send it again), so the sender is told in TwiML instead."""
    monkeypatch.setattr(type(whatsapp.server.hub), "full", property(lambda _: True))
    response = whatsapp.post(inbound(ALPHA_NUMBER, "update: in a busy minute"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    said = ElementTree.fromstring(response.text).findall("Message")
    assert [m.text for m in said] == [not_saved()]
    assert whatsapp.inbox_count() == 0
    # Only the intake's route: a delivery report is not a message, and is still taken.
    report = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "queued", "To": ALPHA_NUMBER, "From": SENDER}
    assert whatsapp.post(report, path="/twilio/status").status_code == 204


# The write ends 0.8 s past the 1.2 s deadline `slow_writes` sets: a busy machine does not move it before.
@pytest.mark.parametrize("fails", [False, True], ids=["stored", "not stored"])
def test_a_message_still_being_written_at_the_deadline_is_told_nothing_was_saved_only_if_it_was_not(
    whatsapp: WhatsApp, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """Its write may yet commit, and then it is answered: "nothing was saved" could be untrue and
    invite the same update twice, so Twilio gets the 503 and the sender nothing from this answer. If
    the write then fails, Twilio does not send the message again: the sender is told nothing was saved,
    once, in a message of its own (through Twilio directly: the database is what failed)."""
    slow_writes(monkeypatch, 2.0, fail=lost_write() if fails else None)
    response = whatsapp.post(inbound(ALPHA_NUMBER, "update: a slow write"))
    assert response.status_code == 503 and "Message" not in response.text
    [sent] = whatsapp.twilio.wait_for(1)
    whatsapp.settle()
    time.sleep(0.5)
    assert whatsapp.twilio.sent == [sent] and sent.to == ALPHA_NUMBER
    if fails:
        assert sent.body == not_saved()
        assert whatsapp.inbox_count() == 0 and _updates(whatsapp) == [] and whatsapp.outbox() == []
    else:
        assert "recorded for Alpha" in sent.body
        assert [u.text for u in _updates(whatsapp)] == ["a slow write"]


def test_a_signed_status_callback_is_taken_and_a_forged_one_refused(whatsapp: WhatsApp) -> None:
    form = {
        "MessageSid": "SM" + "2" * 32,
        "MessageStatus": "failed",
        "ErrorCode": "63016",
        "To": ALPHA_NUMBER,
        "From": SENDER,
        "AccountSid": ACCOUNT_SID,
    }
    assert whatsapp.post(form, path="/twilio/status").status_code == 204
    assert whatsapp.post(form, path="/twilio/status", signature="Zm9yZ2Vk").status_code == 403
