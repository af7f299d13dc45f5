"""A personal reply (the coaches' page link) goes to the person who asked and nobody else, wherever they
asked: the audience rule's one exception to "public where everyone may see it", beside the matrix of
tests/test_audience_matrix.py."""

import uuid
from datetime import timedelta

import pytest
from sqlmodel import col, select

from bot import admin
from bot.core.audience import NOT_SENT_PRIVATELY, SENT_PERSONALLY, SENT_PRIVATELY, address
from bot.core.i18n import translator
from bot.core.inbox import REPLY_KIND, Dispatcher
from bot.core.messages import InboundMessage, Reply
from store.models import City, OutboxMessage
from tests.conftest import NOW, TestBot

EN = translator("en")
ALPHA = City(id=1, slug="alpha", name="Alpha", zone="UTC")
ALPHA_CHANNEL = "slack:T0001:C0001"  # bound to Alpha in the world
UNBOUND = "slack:T0001:C0UNBOUND"
COACH = "slack:T0001:UCOACHAB"


def _message(where: str, sender: str = COACH) -> InboundMessage:
    """The message as the Slack adapter hands it over: a DM, text in a channel, or a slash command."""
    common = {
        "platform": "slack",
        "message_id": uuid.uuid4().hex,
        "sender": sender,
        "text": "/cda dashboard",
        "received_at": NOW,
    }
    user = sender.rsplit(":", 1)[1]
    if where == "dm":
        context = {"channel": "D0DM", "thread_ts": None, "message_ts": "1.1"}
        return InboundMessage(conversation=sender, reply_context=context, direct=True, private=True, **common)
    channel = ALPHA_CHANNEL if where in ("alpha_channel", "slash") else UNBOUND
    if where == "slash":
        context = {"channel": "C0001", "user": user, "response_url": "https://hooks.test/r/1"}
        return InboundMessage(
            conversation=channel,
            reply_context=context,
            reply_expires_at=NOW + timedelta(minutes=30),
            private=True,
            **common,
        )
    context = {"channel": channel.rsplit(":", 1)[1], "thread_ts": "1.1", "message_ts": "1.1"}
    return InboundMessage(conversation=channel, reply_context=context, **common)


LINK = Reply(text="your link", about=[1], personal=True)
STATUS = Reply(text="Status — Alpha", about=[1])


def test_a_personal_reply_about_the_channels_own_city_still_goes_to_the_sender_alone() -> None:
    message = _message("alpha_channel")
    public = address(message, ALPHA, [STATUS], EN)
    assert [o.recipient for o in public] == [ALPHA_CHANNEL]  # the same reply, not personal: posted there
    link, note = address(message, ALPHA, [LINK], EN)
    assert link.recipient == COACH and link.reply.text == "your link"
    assert link.context is None  # not into the channel's thread: the adapter opens a private conversation
    assert note.recipient == ALPHA_CHANNEL and note.context == message.reply_context
    assert note.reply.text == EN.gettext(SENT_PERSONALLY) and note.reply.about == []


def test_a_personal_reply_in_an_unbound_channel_goes_to_the_sender_alone() -> None:
    link, note = address(_message("unbound_channel"), None, [LINK], EN)
    assert (link.recipient, note.recipient) == (COACH, UNBOUND)
    assert note.reply.text == EN.gettext(SENT_PERSONALLY)


@pytest.mark.parametrize("where", ["dm", "slash"])
def test_where_only_the_sender_saw_the_question_the_answer_stays_there(where: str) -> None:
    message = _message(where)
    [link] = address(message, ALPHA if where == "slash" else None, [LINK], EN)
    # A DM answers in the DM; a slash command answers privately within its channel (Slack: ephemeral).
    assert link.recipient == (message.conversation if where == "dm" else COACH)
    assert link.context == message.reply_context


def test_with_other_private_answers_the_note_says_why_they_went() -> None:
    beta = Reply(text="Status — Beta", about=[2])
    *_, note = address(_message("alpha_channel"), ALPHA, [LINK, beta], EN)
    assert note.reply.text == EN.gettext(SENT_PRIVATELY)


def test_a_sender_who_removed_the_app_from_their_chat_is_told_so_not_that_it_was_sent() -> None:
    """Nothing can reach them directly (Teams: the personal app removed, never written over unasked):
    "I've sent you the answer" would be untrue, and the answer would fail for good unseen."""
    asked: list[bool] = []

    def gone() -> bool:
        asked.append(True)
        return False

    message = _message("alpha_channel")
    beta = Reply(text="Status — Beta", about=[2])
    public, note = address(message, ALPHA, [STATUS, beta], EN, gone)
    assert public.recipient == ALPHA_CHANNEL and public.reply is STATUS  # what the channel may see
    assert note.recipient == ALPHA_CHANNEL and note.context == message.reply_context
    assert note.reply.text == EN.gettext(NOT_SENT_PRIVATELY) and asked == [True]
    asked.clear()
    assert [o.reply for o in address(message, ALPHA, [STATUS], EN, gone)] == [STATUS]
    assert asked == []  # nothing to send privately: not asked (a read saved)


@pytest.mark.parametrize("where", ["dm", "alpha_channel", "unbound_channel", "slash"])
def test_the_dashboard_link_is_written_to_the_outbox_for_the_coach_alone(world: TestBot, where: str) -> None:
    with world.store() as store:
        # A coach of Alpha alone: in Alpha's channel the reply shows nothing the channel may not see.
        admin.add_coach(store, COACH, ["alpha"], world.clock.now(), "Cora")
    message = _message(where)
    Dispatcher(world.engine, world.clock).handle(message)
    prefix = f"{REPLY_KIND}|slack|{message.message_id}|"
    with world.store() as store:
        rows = list(
            store.session.exec(
                select(OutboxMessage)
                .where(col(OutboxMessage.key).startswith(prefix))
                .order_by(OutboxMessage.id)
            )
        )
    with_link = [r for r in rows if "/dashboard/signin/" in r.payload["text"]]
    assert len(with_link) == 1
    [link] = with_link
    assert link.recipient in (COACH, message.conversation) and link.payload["personal"] is True
    if where in ("alpha_channel", "unbound_channel"):
        # Posted nowhere but to the coach; the channel hears only where it went.
        assert link.recipient == COACH and link.context is None
        [note] = [r for r in rows if r is not link]
        assert note.recipient == message.conversation
        assert note.payload["text"] == EN.gettext(SENT_PERSONALLY)
    else:
        assert rows == [link]
