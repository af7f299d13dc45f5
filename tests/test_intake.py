"""The intake's group commit: messages are stored a batch a transaction, and a batch is what has
arrived by the time the writer's turn comes (SQLite), so a message that arrives while an earlier one
waits for the write lock is stored with it, not one whole turn later; a failure before a batch is
taken still reaches the senders waiting; a batch whose COMMIT failed is looked for in the inbox before
anyone is told it was not stored."""

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from bot import admin
from bot.core import dispatcher, inbox
from bot.core.clock import FixedClock
from bot.core.inbox import HANDOFF
from bot.core.messages import InboundMessage
from bot.runtime import hub as hub_module
from bot.runtime import intake as intake_module
from bot.runtime.hub import Hub, Unavailable, Undecided
from bot.runtime.intake import Intake
from bot.runtime.turns import Turns
from store.db import make_engine
from store.models import InboxMessage, InboxStatus, OutboxMessage, OutboxStatus, Update
from store.repo import Store, open_store
from tests.conftest import NOW, said, until

LEASE = timedelta(seconds=30)


@contextlib.contextmanager
def turn_held(turns: Turns) -> Iterator[threading.Event]:
    """The write turn held by another thread (a handling, say) until the event is set or the block ends."""
    release, held = threading.Event(), threading.Event()

    def handling() -> None:
        with turns.turn():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=handling)
    holder.start()
    try:
        assert held.wait(5)
        yield release
    finally:
        release.set()
        holder.join(5)


def _home(engine: Engine) -> Engine:
    """`engine`'s database with one city, home, and its member ana."""
    with open_store(engine) as store:
        admin.add_city(store, "home", "Home", "America/Chicago", NOW, None, "implementation")
        admin.add_member(store, "console:ana", "home", NOW)
    return engine


def _message(text: str) -> InboundMessage:
    return said("console:ana", text)


class Outlet:
    """A deliverer that only notes what the intake tells it."""

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.taken: list[OutboxMessage] = []

    def wake(self) -> None:
        self.woken.set()

    def claiming(self) -> inbox.Claiming | None:
        return None

    def take(self, rows: Sequence[OutboxMessage]) -> None:
        self.taken.extend(rows)


class ClaimingOutlet(Outlet):
    """One that has the console's replies written as its claim, as a running deliverer does."""

    def claiming(self) -> inbox.Claiming:
        return inbox.Claiming(frozenset({"console"}), LEASE)


@pytest.fixture
def sqlite_file(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "cda-bot.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


async def test_what_arrives_while_a_batch_waits_its_turn_is_stored_with_it(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _home(make_engine(sqlite_file))
    batches: list[list[str]] = []
    accept_all = inbox.accept_all

    def recorded(store: object, messages: list[InboundMessage], now: object) -> list[inbox.Accepted]:
        batches.append([m.text for m in messages])
        return accept_all(store, messages, now)  # type: ignore[arg-type]

    monkeypatch.setattr(inbox, "accept_all", recorded)
    turns = Turns()
    intake = Intake(engine, FixedClock(NOW), Outlet(), turns=turns)
    # Handling holds the write turn; the first arrival's writer queues behind it.
    with turn_held(turns) as release:
        first = asyncio.ensure_future(intake.submit(_message("update: first")))
        await until(lambda: turns._waiting[True] == 1)
        later = [asyncio.ensure_future(intake.submit(_message(f"update: later {n}"))) for n in range(2)]
        # All three wait together: the first's batch is not taken before its turn comes.
        await until(lambda: len(intake._arriving) == 3)
        assert not first.done()
        release.set()
        assert await asyncio.gather(first, *later) == [True, True, True]
    # One transaction for all three: the later two were there when the turn came.
    assert batches == [["update: first", "update: later 0", "update: later 1"]]
    with open_store(engine) as store:
        assert len(store.session.exec(select(InboxMessage)).all()) == 3
    engine.dispose()


async def test_a_message_not_being_written_by_its_deadline_is_withdrawn_and_never_stored(
    sqlite_file: str,
) -> None:
    """Its sender is told it was not stored (a 503, "nothing was saved"): so it must not be, even once
    the write turn it waited for comes."""
    engine = make_engine(sqlite_file)
    turns = Turns()
    intake = Intake(engine, FixedClock(NOW), Outlet(), turns=turns)
    with turn_held(turns):
        with pytest.raises(intake_module.Withdrawn):
            await intake.submit(_message("update: too late"), patience=0.2)
        assert intake._arriving == []
    assert intake._writer is not None
    await asyncio.wait_for(intake._writer, 5)
    with open_store(engine) as store:
        assert store.session.exec(select(InboxMessage)).all() == []
    engine.dispose()


async def test_a_message_being_written_at_its_deadline_hears_the_outcome(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its batch has begun and may commit: withdrawing it is no longer possible, and telling its sender
    it was not stored could be untrue."""
    engine = _home(make_engine(sqlite_file))
    accept_all = inbox.accept_all

    def slow(store: Store, messages: list[InboundMessage], now: Any) -> list[inbox.Accepted]:
        time.sleep(1.0)
        return accept_all(store, messages, now)

    monkeypatch.setattr(inbox, "accept_all", slow)
    intake = Intake(engine, FixedClock(NOW), Outlet())
    assert await intake.submit(_message("update: slow but sure"), patience=0.4) is True
    with open_store(engine) as store:
        assert len(store.session.exec(select(InboxMessage)).all()) == 1
    engine.dispose()


@pytest.mark.parametrize("fails", [False, True], ids=["stored", "not stored"])
async def test_a_sender_woken_at_its_deadline_is_handed_the_outcome_still_to_come(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """Past its deadline the sender must answer its platform, while the write under way may commit or
    fail: that outcome is neither cancelled nor lost, but handed over, for the sender to be told later
    if nothing was saved. The write ends 0.8 s past the deadline."""
    engine = _home(make_engine(sqlite_file))
    accept_all = inbox.accept_all

    def slow(store: Store, messages: list[InboundMessage], now: Any) -> list[inbox.Accepted]:
        time.sleep(1.2)
        if fails:
            raise OperationalError("INSERT INTO inbox", None, Exception("the database went away"))
        return accept_all(store, messages, now)

    monkeypatch.setattr(inbox, "accept_all", slow)
    intake = Intake(engine, FixedClock(NOW), Outlet())
    with pytest.raises(intake_module.StillWriting) as raised:
        await intake.submit(_message("update: slow, then?"), patience=0.3, deadline=0.4)
    outcome = raised.value.outcome
    assert not outcome.done()
    if fails:
        with pytest.raises(OperationalError):
            await asyncio.wait_for(outcome, 5)
    else:
        assert (await asyncio.wait_for(outcome, 5)).new
    with open_store(engine) as store:
        assert len(store.session.exec(select(InboxMessage)).all()) == (0 if fails else 1)
    engine.dispose()


@pytest.mark.parametrize(
    ("ended", "told"),
    [
        (OperationalError("INSERT", None, Exception("the database went away")), 1),
        (intake_module.Unconfirmed(OperationalError("SELECT", None, Exception("refused"))), 0),
    ],
    ids=["failed", "unconfirmed"],
)
async def test_a_write_past_its_deadline_is_told_as_not_stored_only_when_it_surely_was_not(
    sqlite_file: str, ended: Exception, told: int
) -> None:
    """A write that failed is told, once; one whose COMMIT failed and could not be checked may have
    committed (and is then answered after the handoff), so "nothing was saved" would be a guess."""
    hub = Hub(make_engine(sqlite_file), FixedClock(NOW))
    outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    calls: list[int] = []

    async def tell() -> None:
        calls.append(1)

    hub.tell_if_not_stored(Undecided("still being stored", outcome), tell)
    outcome.set_exception(ended)
    await asyncio.sleep(0.1)
    assert len(calls) == told
    hub.engine.dispose()


async def test_a_failure_before_the_batch_is_taken_reaches_the_senders(sqlite_file: str) -> None:
    """The turn itself can fail (the lock file shared with other processes, say): the messages waiting
    hear the error (their platforms get a 503), and nothing is left going round."""
    engine = make_engine(sqlite_file)

    class BrokenTurns(Turns):
        @contextlib.contextmanager
        def turn(self, urgent: bool = False) -> Iterator[None]:
            raise OSError("no locks available")
            yield

    intake = Intake(engine, FixedClock(NOW), Outlet(), turns=BrokenTurns())
    with pytest.raises(OSError, match="no locks"):
        async with asyncio.timeout(5):
            await intake.submit(_message("update: anyone there?"))
    assert intake._writer is not None
    await asyncio.wait_for(intake._writer, 5)  # and the writer has stopped, nothing left to store
    assert intake._arriving == []
    engine.dispose()


async def test_replies_of_a_batch_handled_again_one_by_one_are_left_for_a_claim(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what the batch's own transaction wrote as claimed is handed to the deliverer; when it
    fails and the messages are handled again one at a time, their replies wait for a claim."""
    engine = _home(make_engine(sqlite_file))

    def broken(*args: object, **kwargs: object) -> inbox.Handled:
        raise ValueError("a handler broke")

    monkeypatch.setattr(inbox, "handle_all", broken)
    outlet = ClaimingOutlet()
    intake = Intake(engine, FixedClock(NOW), outlet)
    await intake.start()
    try:
        assert await intake.submit(_message("update: handled the long way"))
        await until(outlet.woken.is_set)
    finally:
        await intake.stop(1)
    assert outlet.taken == []
    with open_store(engine) as store:
        (reply,) = store.session.exec(select(OutboxMessage)).all()
        assert (reply.status, reply.attempts) == (OutboxStatus.pending, 0)
        assert "recorded" in reply.payload["text"]
    engine.dispose()


def _ana_and_bob(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two members; whatever reads who bob is raises, which handling and its failure notice both do
    first (any fault the two paths share)."""
    with open_store(engine) as store:
        admin.add_city(store, "home", "Home", "America/Chicago", NOW, None, "implementation")
        admin.add_member(store, "console:ana", "home", NOW)
        admin.add_member(store, "console:bob", "home", NOW)
    real = dispatcher.resolve_speaker

    def broken_for_bob(store: Store, msg: InboundMessage, *args: Any) -> Any:
        if msg.sender == "console:bob":
            raise ValueError("bob's row cannot be read")
        return real(store, msg, *args)

    monkeypatch.setattr(dispatcher, "resolve_speaker", broken_for_bob)


async def _one_batch(intake: Intake) -> None:
    """Ana's update and bob's, stored in one group commit and handed to the workers together."""
    await intake.start()
    stored = await asyncio.gather(
        intake.submit(said("console:ana", "update: innocent bystander")),
        intake.submit(said("console:bob", "update: poisoned")),
    )
    assert stored == [True, True]


async def test_a_message_whose_failure_notice_also_fails_is_failed_and_its_batch_mates_handled(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's message raises, and so does its failure notice. Recorded in the transaction of the batch
    handled again one by one, that second fault once took the batch with it: ana's update and reply
    were rolled back, nothing was postponed, and the sweep brought both back together every few
    seconds, forever. Now only the notice is lost: ana's message is handled and answered, bob's is
    marked failed."""
    engine = make_engine(sqlite_file)
    _ana_and_bob(engine, monkeypatch)
    monkeypatch.setattr(intake_module, "SWEEP_SECONDS", 0.05)
    clock = FixedClock(NOW)
    intake = Intake(engine, clock, Outlet())
    try:
        await _one_batch(intake)
        await asyncio.sleep(0.5)
        clock.set(NOW + timedelta(seconds=31))  # past the hand-off: the sweep would find them pending
        await asyncio.sleep(1.0)
    finally:
        await intake.stop(1)
    with open_store(engine) as store:
        statuses = {
            InboundMessage.model_validate(row.message).sender if row.message else "ana": row.status
            for row in store.session.exec(select(InboxMessage))
        }
        updates = [u.text for u in store.session.exec(select(Update))]
        replies = [o.payload["text"] for o in store.session.exec(select(OutboxMessage))]
    engine.dispose()
    assert statuses == {"ana": InboxStatus.done, "console:bob": InboxStatus.failed}
    assert updates == ["innocent bystander"]
    assert len(replies) == 1 and "recorded" in replies[0], replies


async def test_a_batch_that_raises_unforeseen_is_postponed_not_left_for_the_sweep(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should even marking bob's message failed raise, nothing of the batch is kept: it waits out a
    backoff, in this process and in the database, instead of coming back with the next sweep."""
    engine = make_engine(sqlite_file)
    _ana_and_bob(engine, monkeypatch)

    def unwritable(*args: Any) -> None:
        raise ValueError("the inbox row cannot be written")

    monkeypatch.setattr(Store, "fail_inbox", unwritable)
    intake = Intake(engine, FixedClock(NOW), Outlet())

    def postponed() -> list[InboxMessage]:
        with open_store(engine) as store:
            return [r for r in store.session.exec(select(InboxMessage)) if r.attempts == 1]

    try:
        await _one_batch(intake)
        await until(lambda: len(postponed()) == 2)
        rows = postponed()
        assert intake._known == {r.id for r in rows}  # held, to be tried again here after the backoff
    finally:
        await intake.stop(0)
    engine.dispose()
    assert [(r.status, r.last_error) for r in rows] == [(InboxStatus.pending, "ValueError")] * 2
    assert all(r.next_attempt_at == NOW + intake_module.backoff(1) for r in rows)


@pytest.mark.parametrize("retry", ["whole", "one by one"])
async def test_replies_of_a_handling_whose_commit_was_not_confirmed_go_out_without_waiting_out_their_lease(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch, retry: str
) -> None:
    """The connection breaks at COMMIT after the database has committed: the intake hears a
    transient error and tries the messages again a second later, finding them handled. The replies
    that handling wrote as this process's claim are handed to its deliverer then, leased again from
    then, and not left waiting for their lease to run out — also where the retry's batch fails as a
    whole and is handled again one by one."""
    engine = _home(make_engine(sqlite_file))
    handle_all, real_open_store = inbox.handle_all, intake_module.open_store
    calls = {"handled": 0, "broken": 0}

    def counted(*args: Any, **kwargs: Any) -> inbox.Handled:
        calls["handled"] += 1
        if calls["handled"] == 2 and retry == "one by one":
            raise ValueError("a handler broke")
        return handle_all(*args, **kwargs)

    @contextlib.contextmanager
    def breaking_after_commit(opened: Engine) -> Iterator[Store]:
        with real_open_store(opened) as store:
            yield store
        # The handling's transaction only: the sweep reads through another engine (`reader`), and
        # closing its store as the handling commits took the break in its place.
        if opened is engine and calls["handled"] == 1 and not calls["broken"]:
            calls["broken"] += 1
            raise OperationalError("COMMIT", None, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(inbox, "handle_all", counted)
    monkeypatch.setattr(intake_module, "open_store", breaking_after_commit)
    clock = FixedClock(NOW)
    outlet = ClaimingOutlet()
    intake = Intake(engine, clock, outlet)
    await intake.start()
    try:
        assert await intake.submit(_message("update: committed, though nobody heard"))
        await until(lambda: calls["broken"] == 1)
        clock.at = NOW + timedelta(seconds=1)  # the retry's time
        await until(lambda: bool(outlet.taken))
        await until(lambda: intake.backlog == 0)
    finally:
        await intake.stop(1)
    assert calls["handled"] == 2  # handled once, and found done the second time
    (taken,) = outlet.taken
    assert (taken.status, taken.attempts) == (OutboxStatus.sending, 1)
    assert taken.next_attempt_at == NOW + timedelta(seconds=1) + LEASE
    with open_store(engine) as store:
        (reply,) = store.session.exec(select(OutboxMessage)).all()
        assert (reply.id, reply.status, reply.attempts) == (taken.id, OutboxStatus.sending, 1)
        assert reply.next_attempt_at == taken.next_attempt_at  # the lease it is sent under
        assert "recorded" in reply.payload["text"]
        (message,) = store.session.exec(select(InboxMessage)).all()
        assert message.status == InboxStatus.done
    engine.dispose()


async def test_the_sweep_does_not_queue_again_what_was_handled_while_it_read(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep reads what is pending in a thread; messages this process handles meanwhile are in
    that read still pending, and queued again from it they would be handled a second time."""
    engine = _home(make_engine(db_url))
    intake = Intake(engine, FixedClock(NOW), Outlet())
    read, handled = threading.Event(), threading.Event()
    sizes: list[int] = []
    handle_all, due = inbox.handle_all, intake._due

    def counted(store: Store, inbox_ids: list[int], *args: Any, **kwargs: Any) -> inbox.Handled:
        read.wait(10)  # handled once the sweep has read them as pending
        sizes.append(len(inbox_ids))
        return handle_all(store, inbox_ids, *args, **kwargs)

    def slow_read(now: Any) -> list[int]:
        found = due(now)
        read.set()
        handled.wait(10)  # the read comes back after they were handled
        return found

    monkeypatch.setattr(inbox, "handle_all", counted)
    monkeypatch.setattr(intake, "_due", slow_read)
    assert all(await asyncio.gather(*(intake.submit(_message(f"update: n{n}")) for n in range(5))))
    await intake.start()
    try:
        await until(lambda: sum(sizes) == 5 and intake.backlog == 0, 30)
        handled.set()
        await asyncio.sleep(0.2)  # the sweep's read back, and anything it queued taken
        await until(lambda: intake.backlog == 0, 30)
    finally:
        await intake.stop(1)
    assert sum(sizes) == 5
    engine.dispose()


async def test_a_backlog_is_handled_in_batches_as_big_as_the_database_allows(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a handling transaction holds the write lock, so its batches stay small; PostgreSQL's
    are bigger, spreading each transaction's own statements over more messages. All are handled."""
    engine = _home(make_engine(db_url))
    sizes: list[int] = []
    handle_all = inbox.handle_all

    def counted(store: Store, inbox_ids: list[int], *args: Any, **kwargs: Any) -> inbox.Handled:
        sizes.append(len(inbox_ids))
        return handle_all(store, inbox_ids, *args, **kwargs)

    monkeypatch.setattr(inbox, "handle_all", counted)
    intake = Intake(engine, FixedClock(NOW), Outlet())
    # Accepted before the workers start: a backlog waiting for them, as under load.
    assert all(await asyncio.gather(*(intake.submit(_message(f"update: n{n}")) for n in range(120))))
    await intake.start()
    try:
        await until(lambda: intake.backlog == 0, 30)
    finally:
        await intake.stop(1)
    assert sum(sizes) == 120
    assert max(sizes) == (20 if engine.dialect.name == "sqlite" else 50)
    with open_store(engine) as store:
        statuses = store.session.exec(select(InboxMessage.status)).all()
        assert statuses == [InboxStatus.done] * 120
    engine.dispose()


def commits_lost(monkeypatch: pytest.MonkeyPatch, committed: bool, readable: bool = True) -> None:
    """The COMMIT of each batch of arrivals fails as a connection lost during it would: after the
    database committed (`committed`), or before. Unless `readable`, the inbox cannot be read afterwards
    either, to learn which."""
    accept_all = inbox.accept_all

    def then_lost(store: Store, messages: list[InboundMessage], now: datetime) -> list[inbox.Accepted]:
        accepted = accept_all(store, messages, now)

        def lose(connection: Connection) -> None:
            if committed:
                dbapi_connection = connection.connection.dbapi_connection
                assert dbapi_connection is not None
                dbapi_connection.commit()
            raise OperationalError("COMMIT", None, Exception("server closed the connection unexpectedly"))

        event.listen(store.session.connection(), "commit", lose, once=True)
        return accepted

    looked_up = Store.inbox_ids

    def unreadable(store: Store, keys: Any, status: Any = None) -> dict[tuple[str, str], int]:
        if status is not None:  # the batch's own look for earlier duplicates, before its COMMIT
            return looked_up(store, keys, status)
        raise OperationalError("SELECT", None, Exception("connection refused"))

    monkeypatch.setattr(inbox, "accept_all", then_lost)
    if not readable:
        monkeypatch.setattr(Store, "inbox_ids", unreadable)


def _inbox(engine: Engine) -> list[InboxMessage]:
    with open_store(engine) as store:
        return list(store.session.exec(select(InboxMessage).order_by(InboxMessage.id)))


async def test_a_batch_whose_commit_failed_after_it_took_is_acknowledged_and_handled_now(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks during COMMIT, after the database committed. Told "nothing was saved",
    the person would record the update again, and the one stored would wait out the handoff unanswered:
    the inbox is read, and the message found there is acknowledged and handled at once, once."""
    engine = _home(make_engine(db_url))
    monkeypatch.setattr(intake_module, "STARTUP_HORIZON", timedelta())  # the sweep finds nothing due
    commits_lost(monkeypatch, committed=True)
    intake = Intake(engine, FixedClock(NOW), Outlet())  # the clock stays short of the handoff
    await intake.start()
    try:
        assert await intake.submit(_message("update: committed, though nobody heard")) is True
        await until(lambda: intake.taken == 1 and intake.backlog == 0)
    finally:
        await intake.stop(1)
    ((status,),) = [(row.status,) for row in _inbox(engine)]
    with open_store(engine) as store:
        updates = [u.text for u in store.session.exec(select(Update))]
        replies = [o.payload["text"] for o in store.session.exec(select(OutboxMessage))]
    engine.dispose()
    assert status == InboxStatus.done
    assert updates == ["committed, though nobody heard"]
    assert len(replies) == 1 and "recorded" in replies[0], replies


async def test_a_batch_whose_commit_failed_before_it_took_refuses_only_what_is_not_stored(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks during COMMIT, before the database committed: the new message is refused
    (its platform gets a 503, a person "nothing was saved", both true). A platform's retry in the same
    batch of a message stored earlier is stored all the same: acknowledged as the duplicate it is, and
    taken for handling."""
    engine = make_engine(db_url)
    intake = Intake(engine, FixedClock(NOW), Outlet())
    earlier = _message("update: stored before")
    assert await intake.submit(earlier) is True
    (stored,) = _inbox(engine)
    commits_lost(monkeypatch, committed=False)
    batches: list[int] = []
    lost_accept_all = inbox.accept_all

    def recorded(store: Store, messages: list[InboundMessage], now: datetime) -> list[inbox.Accepted]:
        batches.append(len(messages))
        return lost_accept_all(store, messages, now)

    monkeypatch.setattr(inbox, "accept_all", recorded)
    retry, new = await asyncio.gather(
        intake.submit(earlier),
        intake.submit(_message("update: lost with the commit")),
        return_exceptions=True,
    )
    assert batches == [2]  # one transaction for both
    assert retry is False  # a duplicate: acknowledged
    assert isinstance(new, OperationalError) and not isinstance(new, intake_module.Unconfirmed)
    assert [row.id for row in _inbox(engine)] == [stored.id]
    assert stored.id in intake._known  # the retry's: taken for handling
    engine.dispose()


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not committed"])
async def test_a_batch_whose_commit_failed_unseen_is_undecided(
    db_url: str, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """The connection breaks during COMMIT and the inbox cannot be read either, nor again for as long as
    it is tried: the message may be stored, so the hub says Undecided (a slash command answers that its
    answer will follow), never Unavailable ("nothing was saved"), and no one is told anything later. One
    stored is found by the sweep after the handoff."""
    engine = make_engine(db_url)
    monkeypatch.setattr(intake_module, "LEARN_PAUSES", (0.05, 0.05))
    commits_lost(monkeypatch, committed=committed, readable=False)
    hub = Hub(engine, FixedClock(NOW))
    try:
        with pytest.raises(Undecided) as undecided:
            await hub.accept(_message("update: nobody knows"))
        assert undecided.value.outcome is None
    finally:
        hub.turns.close()
    rows = _inbox(engine)
    engine.dispose()
    if committed:
        ((status, due),) = [(row.status, row.next_attempt_at) for row in rows]
        assert (status, due) == (InboxStatus.pending, NOW + HANDOFF)
    else:
        assert rows == []


@pytest.mark.parametrize("late", [False, True], ids=["within its deadline", "past its deadline"])
@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not committed"])
async def test_an_unconfirmed_commit_is_learned_from_the_inbox_once_the_database_answers(
    db_url: str, monkeypatch: pytest.MonkeyPatch, committed: bool, late: bool
) -> None:
    """The inbox is read again until it answers. Within the sender's deadline, the sender hears the
    truth: acknowledged and handled at once, or "nothing was saved". Past it, the Undecided's outcome
    says it, and one not stored is told (WhatsApp and a slash command are never sent again: it would be
    lost without a word); one stored is handled at once, not after the handoff."""
    engine = make_engine(db_url)
    monkeypatch.setattr(intake_module, "LEARN_PAUSES", (0.05, 0.05, 0.05))
    if late:
        monkeypatch.setattr(hub_module, "DECIDE_SECONDS", 0.06)  # the inbox answers at the second read
    readable = Store.inbox_ids
    commits_lost(monkeypatch, committed=committed, readable=False)
    unreadable = Store.inbox_ids
    reads = 0

    def back_after_two_reads(store: Store, keys: Any, status: Any = None) -> dict[tuple[str, str], int]:
        nonlocal reads
        if status is None:
            reads += 1
        # Unreadable for the batch's own read after its COMMIT, and the first read again.
        return (unreadable if reads <= 2 else readable)(store, keys, status)

    monkeypatch.setattr(Store, "inbox_ids", back_after_two_reads)
    told: list[str] = []

    async def tell() -> None:
        told.append("nothing was saved")

    hub = Hub(engine, FixedClock(NOW))
    try:
        if not late and committed:
            assert await hub.accept(_message("update: did it take?")) is True
        elif not late:
            with pytest.raises(Unavailable) as refused:
                await hub.accept(_message("update: did it take?"))
            assert not isinstance(refused.value, Undecided)
        else:
            with pytest.raises(Undecided) as undecided:
                await hub.accept(_message("update: did it take?"))
            assert undecided.value.outcome is not None
            hub.tell_if_not_stored(undecided.value, tell)
            await asyncio.wait_for(asyncio.gather(*hub._telling), 5)
        taken = hub.intake.taken
    finally:
        await hub.intake.stop(0)
        hub.turns.close()
    engine.dispose()
    assert reads == 3
    assert taken == (1 if committed else 0)
    assert told == (["nothing was saved"] if late and not committed else [])
