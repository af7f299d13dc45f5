"""The dispatcher's promises: once per platform message id, bounded input, always an answer."""

import threading
import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import event
from sqlmodel import select

from bot import admin
from bot.core import inbox
from bot.core.inbox import Dispatcher
from bot.core.messages import MAX_TEXT, InboundMessage
from store.models import Blocker, InboxMessage, OutboxMessage, Update
from tests.conftest import NOW, TestBot, said


def _counts(bot: TestBot) -> tuple[int, int]:
    with bot.store() as store:
        return len(store.session.exec(select(Update)).all()), len(store.session.exec(select(Blocker)).all())


def test_update_reply_names_its_number(world: TestBot) -> None:
    assert world.say("console:a1", "update: shipped the intake prototype") == (
        "Update #4 recorded for Alpha. Thanks for keeping momentum!"
    )
    with world.store() as store:
        update = store.session.get(Update, 4)
        assert update is not None
        assert (update.text, update.author, update.created_at) == (
            "shipped the intake prototype",
            "console:a1",
            world.clock.now(),
        )


@pytest.mark.parametrize(
    "text", ["/cda update via slash", "cda update via prefix", "UPDATE:  shouty  ", "Update:x"]
)
def test_every_form_of_update_records_one(world: TestBot, text: str) -> None:
    assert "recorded for Alpha" in world.say("console:a1", text)
    assert _counts(world) == (4, 3)


def test_same_message_id_twice_makes_one_record_and_one_reply(world: TestBot) -> None:
    first = world.send("console:a1", "blocker: no data yet", message_id="Ev0001")
    second = world.send("console:a1", "blocker: no data yet", message_id="Ev0001")
    assert len(first) == 1 and "Blocker #4 logged" in first[0].text
    assert second == []
    assert _counts(world) == (3, 4)
    with world.store() as store:
        notices = store.session.exec(
            select(OutboxMessage).where(OutboxMessage.key.startswith("blocker_opened:4:"))
        )
        assert len(notices.all()) == 3  # coach-a, coach-ab, coach-all: once each
    # The same id on another platform is another message.
    assert world.send("slack:T0001:U0001", "help", message_id="Ev0001") != []


def test_concurrent_duplicates_make_one_record(world: TestBot) -> None:
    results: list[int] = []

    def deliver() -> None:
        results.append(len(world.send("console:a1", "update: raced", message_id="race-1")))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 0, 1]
    assert _counts(world) == (4, 3)


def test_text_over_the_limit_is_refused_and_stores_nothing(world: TestBot) -> None:
    text = "update: " + "x" * (MAX_TEXT - len("update: ") + 1)
    reply = world.say("console:a1", text)
    assert "limit is 8,000" in reply and "nothing was saved" in reply
    assert _counts(world) == (3, 3)
    blocker = "blocker: " + "y" * MAX_TEXT
    assert "limit is 8,000" in world.say("console:a1", blocker)
    assert _counts(world) == (3, 3)


def test_text_at_the_limit_is_accepted(world: TestBot) -> None:
    text = "update: " + "x" * (MAX_TEXT - len("update: "))
    assert "recorded" in world.say("console:a1", text)
    assert _counts(world) == (4, 3)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_gets_an_answer(world: TestBot, text: str) -> None:
    assert "empty message" in world.say("console:a1", text)


@pytest.mark.parametrize(
    "text",
    # `update: …` is the help hint's own example, copied as it is: punctuation alone says nothing.
    ["update:", "/cda update", "blocker:   ", "/cda blocker", "update: …", "blocker: -", "/cda update ..."],
)
def test_command_without_text_asks_for_it_and_stores_nothing(world: TestBot, text: str) -> None:
    reply = world.say("console:a1", text)
    assert "`update:" in reply or "`blocker:" in reply
    assert _counts(world) == (3, 3)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/cda frobnicate", "I didn't catch that."),
        ("hello there", "I didn't catch that."),
        ("lorem ipsum dolor sit amet", "I didn't catch that."),
        ("cda", "What you can do (Alpha team)"),
        ("/cda resolve", "Which blocker?"),
    ],
)
def test_unknown_text_gets_a_hint_never_silence(world: TestBot, text: str, answer: str) -> None:
    assert world.say("console:a1", text).startswith(answer)


def test_blocker_tells_the_citys_coaches_through_the_outbox(world: TestBot) -> None:
    reply = world.say("console:a1", "blocker: the 311 export is late", message_id="b-1")
    assert "Your coaches have been told" in reply
    with world.store() as store:
        rows = store.session.exec(select(OutboxMessage))
        notices = [r for r in rows if r.kind == "blocker_opened" and "the 311 export" in r.payload["text"]]
    assert sorted(n.recipient for n in notices) == [
        "console:coach-a",
        "console:coach-ab",
        "console:coach-all",
    ]
    assert all(n.status == "pending" and n.city_id == 1 for n in notices)
    assert notices[0].payload["buttons"][0]["command"] == "/cda resolve 4"


@pytest.mark.parametrize(
    ("member", "today"), [("console:a1", "(today) by Ann"), ("console:g1", "(hoy) por Gil")]
)
def test_a_blocker_opened_today_says_today_not_zero_days(world: TestBot, member: str, today: str) -> None:
    world.say(member, "blocker: the export is late")
    listed = world.say(member, "/cda blockers")
    assert today in listed and "(0 " not in listed and "hace 0" not in listed


def test_city_without_coach_says_so(testbot: TestBot) -> None:
    with testbot.store() as store:
        admin.add_city(store, "solo", "Solo", "Asia/Tokyo", testbot.clock.now())
        admin.add_member(store, "console:s1", "solo", testbot.clock.now())
    assert "No coach is assigned" in testbot.say("console:s1", "blocker: nobody to tell")
    with testbot.store() as store:
        rows = store.session.exec(select(OutboxMessage)).all()
        assert [(row.kind, row.recipient) for row in rows] == [("reply", "console:s1")]


def test_internal_error_is_a_polite_reply_and_stores_nothing(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.core import dispatcher

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(
        dispatcher.COMMANDS, "update", dispatcher.Spec(broken, dispatcher.COMMANDS["update"].roles, "own")
    )
    before = _counts(world)
    reply = world.say("console:a1", "update: will fail", message_id="err-1")
    assert "something went wrong" in reply and "nothing was saved" in reply and "boom" not in reply
    with world.store() as store:
        [seen] = store.session.exec(select(InboxMessage).where(InboxMessage.message_id == "err-1"))
        # Kept, with what failed, for the admins; the same error would only come again on a retry.
        assert (seen.status, seen.last_error) == ("failed", "RuntimeError: boom")
        assert seen.message is not None and seen.message["text"] == "update: will fail"
    assert _counts(world) == before
    assert world.say("console:a1", "update: will fail", message_id="err-1") == ""  # a retry: once


def test_chatter_in_a_shared_channel_is_left_alone_but_commands_and_questions_are_answered(
    world: TestBot,
) -> None:
    def said_in_channel(text: str) -> list[str]:
        message = InboundMessage(
            platform="slack",
            message_id=uuid.uuid4().hex,
            conversation="slack:T0001:C0001",
            sender="slack:T0001:U0042",
            text=text,
            received_at=world.clock.now(),
            addressed=False,
        )
        return [reply.text for reply in Dispatcher(world.engine, world.clock).handle(message)]

    assert said_in_channel("great meeting everyone, thanks!") == []
    assert said_in_channel("x" * 9000) == []
    assert "recorded for Alpha" in said_in_channel("update: pilot started")[0]
    assert "Tue 1 Dec 2026" in said_in_channel("when is our next session?")[0]
    assert "limit is 8,000" in said_in_channel("update: " + "x" * 9000)[0]
    assert "/cda help" in world.say("console:a1", "great meeting everyone, thanks!")  # said to the bot


def test_the_limit_counts_what_was_typed_not_the_cda_prefix(world: TestBot) -> None:
    # A slash command's text arrives as `/cda <text>`: 8,000 typed characters are within the limit.
    typed = "update " + "x" * (MAX_TEXT - len("update "))
    assert "recorded" in world.say("console:a1", f"/cda {typed}")
    assert world.say("console:a1", f"/cda {typed}x").startswith("That message has 8,001 characters;")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/cda resolve ²", "Which blocker?"),
        ("/cda resolve ١٢", "Which blocker?"),  # digits, but not the ones ids are written in
        ("/cda resolve 12345678901234567890123", "There is no blocker #12345678901234567890123"),
        ("/cda resolve 2147483648", "There is no blocker #2147483648"),
        ("/cda updates " + "9" * 5000, "Updates in the last 366 days"),
        ("/cda updates -" + "9" * 5000, "is negative"),
        # Blockers take no number: it is named back, whatever its size.
        ("/cda blockers 00000000000000000000000001", "doesn't take '00000000000000000000000001'"),
    ],
)
def test_numbers_that_no_store_could_hold_get_their_real_answer(
    world: TestBot, text: str, answer: str
) -> None:
    reply = world.say("console:a1", text)
    assert answer in reply and "something went wrong" not in reply


def test_a_nul_byte_or_broken_unicode_is_stored_as_a_replacement_character(world: TestBot) -> None:
    assert "recorded" in world.say("console:a1", "update: before\x00after \ud800 end")
    with world.store() as store:
        [update] = store.session.exec(select(Update).where(Update.text.startswith("before")))  # type: ignore[attr-defined]
    assert update.text == "before\ufffdafter \ufffd end"


def test_an_id_longer_than_the_store_allows_is_refused_at_the_door() -> None:
    with pytest.raises(ValidationError):
        InboundMessage(
            platform="slack",
            message_id="E" * 201,
            conversation="slack:T1:C1",
            sender="slack:T1:U1",
            text="update: x",
            received_at=NOW,
        )


def _handled_in_one_batch(bot: TestBot, messages: list[InboundMessage]) -> list[list[str]]:
    """`messages` accepted, then handled in one transaction, as the server's workers do under load."""
    with bot.store() as store:
        accepted = inbox.accept_all(store, messages, NOW)
    with bot.store() as store:
        inbox.handle_all(store, [a.inbox_id for a in accepted if a.inbox_id is not None], NOW)
    with bot.store() as store:
        rows = store.session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return [
        [r.payload["text"] for r in rows if r.key.startswith(f"reply|{m.platform}|{m.message_id}|")]
        for m in messages
    ]


def test_a_batch_reads_who_speaks_where_once_for_all_its_messages(world: TestBot) -> None:
    channel = "slack:T0001:C0001"  # bound to Alpha
    messages = [
        said("console:a1", "update: one"),
        said("console:b1", "update: two"),
        said("slack:T0001:U0042", "update: three", conversation=channel),
        said("console:coach-ab", "/cda status beta"),
    ]
    asked: list[str] = []
    event.listen(
        world.engine,
        "before_cursor_execute",
        lambda *a: asked.append(a[2]) if "p_identity" in a[2] else None,
    )
    replies = _handled_in_one_batch(world, messages)
    assert len(asked) == 1
    assert replies[0] == ["Update #4 recorded for Alpha. Thanks for keeping momentum!"]
    assert replies[1][0].startswith("Update #5 recorded for Beta")
    assert replies[2][0].startswith("Update #6 recorded for Alpha")  # anyone in Alpha's channel
    assert "Beta" in replies[3][0] and "Alpha" not in replies[3][0]


def test_who_joined_earlier_in_a_batch_is_a_member_for_the_messages_after_it(world: TestBot) -> None:
    """`join` changes who the sender is: what was read before it must not answer for what follows."""
    with world.store() as store:
        code = admin.add_join_code(store, "beta", NOW, 14, None).code
    newcomer = "slack:T0001:U0777"
    replies = _handled_in_one_batch(
        world,
        [
            said(newcomer, "update: before joining"),
            said(newcomer, f"join {code}"),
            said(newcomer, "update: after"),
        ],
    )
    assert "recorded" not in replies[0][0]  # not yet on Beta's roster
    assert "recorded" in replies[2][0] and "Beta" in replies[2][0]


def test_a_batchs_updates_are_written_together_before_a_command_that_reads_them(world: TestBot) -> None:
    """On PostgreSQL the updates of a batch are written in one round trip, not one each; a command
    later in the batch still sees those before it and none after it, and each reply names the number
    its update was stored under."""
    inserts: list[int] = []
    event.listen(
        world.engine,
        "before_cursor_execute",
        lambda *a: inserts.append(len(a[3]) if a[5] else 1) if "INSERT INTO updates" in a[2] else None,
    )
    texts = [f"batched {n}" for n in range(4)]
    replies = _handled_in_one_batch(
        world,
        [
            *(said("console:a1", f"update: {text}") for text in texts[:3]),
            said("console:a1", "/cda updates"),
            said("console:a1", f"update: {texts[3]}"),
        ],
    )
    with world.store() as store:
        stored = {u.text: u.id for u in store.session.exec(select(Update))}
    for text, reply in zip(texts, [*replies[:3], replies[4]], strict=True):
        assert reply == [f"Update #{stored[text]} recorded for Alpha. Thanks for keeping momentum!"]
    listing = replies[3][0]
    assert all(text in listing for text in texts[:3]) and texts[3] not in listing
    # Rows per statement: the three before the listing together, then the one after it.
    postgres = world.engine.dialect.name == "postgresql"
    assert inserts == ([3, 1] if postgres else [1, 1, 1, 1])


def test_a_batch_that_fails_after_holding_back_updates_stores_none_of_them_and_the_next_starts_clean(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler raising after updates were recorded (and, on PostgreSQL, held back to be written
    together) undoes the whole batch: none of its updates is stored, and the next batch's are."""
    from bot.core import dispatcher

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(
        dispatcher.COMMANDS, "blocker", dispatcher.Spec(broken, dispatcher.COMMANDS["blocker"].roles, "own")
    )
    messages = [said("console:a1", "update: held one"), said("console:a1", "update: held two")]
    with world.store() as store:
        accepted = inbox.accept_all(store, [*messages, said("console:a1", "blocker: breaks")], NOW)
    ids = [a.inbox_id for a in accepted if a.inbox_id is not None]
    with pytest.raises(RuntimeError), world.store() as store:
        inbox.handle_all(store, ids, NOW)
    with world.store() as store:
        assert not store.session.exec(select(Update).where(Update.text.startswith("held"))).all()  # type: ignore[attr-defined]
    assert _handled_in_one_batch(world, [said("console:a1", "update: after")])[0][0].startswith("Update #")
