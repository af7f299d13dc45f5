"""The store on each backend: migrations from an empty database, WAL, and queries the coaches rely on."""

import contextlib
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, column, event, insert, inspect, table, text
from sqlmodel import Session, SQLModel, select

from bot import admin
from bot.core.clock import FixedClock
from bot.core.inbox import Dispatcher
from bot.core.messages import InboundMessage
from store.db import alembic_config, make_engine, normalize_url, upgrade
from store.models import Blocker, ConversationReference, InboxMessage, OutboxMessage, Person, Update
from store.repo import Store, open_store
from store.types import UTCDateTime
from tests.conftest import NOW, PG_URL, TestBot, due_message, scratch_postgres_database

HEAD = ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).get_current_head()


def _empty_database(kind: str, tmp_path: Path) -> "contextlib.AbstractContextManager[str]":
    import contextlib

    if kind == "sqlite":
        return contextlib.nullcontext(f"sqlite:///{tmp_path / 'empty.db'}")
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    return scratch_postgres_database()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_upgrade_an_empty_database_and_match_the_models(kind: str, tmp_path: Path) -> None:
    with _empty_database(kind, tmp_path) as url:
        engine = make_engine(url)
        assert inspect(engine).get_table_names() == []
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert context.get_current_revision() == HEAD
            assert compare_metadata(context, SQLModel.metadata) == []
        tables = set(inspect(engine).get_table_names())
        assert tables == {t.name for t in SQLModel.metadata.sorted_tables} | {"alembic_version"}
        upgrade(engine)  # a second run is a no-op
        from alembic import command

        command.downgrade(alembic_config(engine), "base")
        assert inspect(engine).get_table_names() == ["alembic_version"]
        upgrade(engine)
        assert "updates" in inspect(engine).get_table_names()
        engine.dispose()


@pytest.mark.parametrize("start", ["0006", "0008"])
def test_the_upgrade_builds_outbox_indexes_without_holding_off_the_outbox_writes(start: str) -> None:
    """The migration runs while the previous release's replicas serve (README, "Upgrading"). On
    PostgreSQL 0007 and 0009 build their outbox indexes CONCURRENTLY: while a build waits for a
    replica's transaction open on the outbox, another replica still writes to the outbox. A plain
    build would queue that write behind it until the open transaction ended."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    with scratch_postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine, start)
        try:
            with Session(engine) as open_, Session(engine) as other:
                open_.add(due_message("open", "console:a", NOW))
                open_.flush()  # a replica's transaction on the outbox, still open
                building = threading.Thread(target=upgrade, args=(engine,))
                building.start()
                try:
                    _wait_for_a_waiting_index_build(engine)
                    other.execute(text("SET LOCAL lock_timeout = '3s'"))
                    other.add(due_message("meanwhile", "console:b", NOW))
                    other.commit()  # raises if the write waited for the build
                finally:
                    open_.commit()
                    building.join(30)
            assert not building.is_alive()
            with engine.connect() as connection:
                index = "'ix_outbox_replies_waiting'::regclass"
                valid = connection.execute(
                    text(f"SELECT indisvalid FROM pg_index WHERE indexrelid = {index}")
                ).scalar()
                assert valid is True
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert context.get_current_revision() == HEAD
                assert compare_metadata(context, SQLModel.metadata) == []
        finally:
            engine.dispose()


def test_an_upgrade_tried_again_after_the_index_build_failed_builds_it_again() -> None:
    """A concurrent build that fails (a cancelled upgrade) leaves an invalid index of that name, and
    the revision unchanged: the next upgrade builds the index anew."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    with scratch_postgres_database() as url:
        engine = make_engine(url)
        try:
            upgrade(engine, "0008")
            with engine.begin() as connection:
                connection.execute(text("CREATE INDEX ix_outbox_replies_waiting ON outbox (key)"))
                connection.execute(
                    text(
                        "UPDATE pg_index SET indisvalid = false "
                        "WHERE indexrelid = 'ix_outbox_replies_waiting'::regclass"
                    )
                )
            upgrade(engine)
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert context.get_current_revision() == HEAD
                assert compare_metadata(context, SQLModel.metadata) == []
                valid = connection.execute(
                    text(
                        "SELECT indisvalid FROM pg_index "
                        "WHERE indexrelid = 'ix_outbox_replies_waiting'::regclass"
                    )
                ).scalar()
                assert valid is True
        finally:
            engine.dispose()


def _wait_for_a_waiting_index_build(engine: Engine) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'CREATE INDEX%' AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        with engine.connect() as connection:
            if connection.execute(query).scalar():
                return
        time.sleep(0.05)
    raise AssertionError("the index build never waited for the open transaction")


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///./cda-bot.db", "sqlite:///./cda-bot.db"),
    ],
)
def test_database_urls_people_paste_are_accepted(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_coach_queries_per_city_newest_first(engine: Engine) -> None:
    with open_store(engine) as store:
        a = admin.add_city(store, "alpha", "Alpha", "UTC", NOW)
        b = admin.add_city(store, "beta", "Beta", "UTC", NOW)
        assert a.id and b.id
        for days, city in ((10, a), (3, a), (1, b), (0, a)):
            store.add_update(
                city.id,  # type: ignore[arg-type]
                "console:x",
                f"{city.slug}-{days}",
                "console",
                NOW - timedelta(days=days),
            )
        recent = store.updates([a.id], NOW - timedelta(days=7))
        assert [u.text for u in recent] == ["alpha-0", "alpha-3"]
        assert store.count_updates(a.id, NOW - timedelta(days=7)) == 2
        last = store.last_update(b.id)
        assert last is not None and last.text == "beta-1"
        for days in (2, 20):
            store.add_blocker(
                Blocker(
                    city_id=a.id, author="console:x", text=f"b{days}", opened_at=NOW - timedelta(days=days)
                )
            )
        assert [x.text for x in store.blockers([a.id])] == ["b20", "b2"]  # oldest first
        assert store.count_open_blockers(a.id) == 2 and store.count_open_blockers(b.id) == 0


def test_outbox_key_plans_a_message_once(engine: Engine) -> None:
    def message() -> OutboxMessage:
        return due_message("console:c|reminder|42", "console:c", NOW, kind="reminder")

    with open_store(engine) as store:
        assert store.enqueue(message()) is True
        assert store.enqueue(message()) is False
        assert len(store.outbox()) == 1
    with open_store(engine) as store:
        assert store.enqueue(message()) is False


def test_a_failed_unit_of_work_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), open_store(engine) as store:
        admin.add_city(store, "alpha", "Alpha", "UTC", NOW)
        raise RuntimeError("halfway")
    with open_store(engine) as store:
        assert store.cities() == []


def test_conversation_references_are_upserted(engine: Engine) -> None:
    with open_store(engine) as store:
        store.save_reference("teams:t:conv", "teams", {"service_url": "http://127.0.0.1:1/"}, NOW)
        store.save_reference("teams:t:conv", "teams", {"service_url": "http://127.0.0.1:2/"}, NOW)
    with open_store(engine) as store:
        assert store.reference("teams:t:conv") == {"service_url": "http://127.0.0.1:2/"}
        assert store.reference("teams:t:other") is None


def test_concurrent_first_messages_in_a_new_channel_are_all_handled(world: TestBot) -> None:
    """They all save the channel's reference at once: an upsert, so none of them fails on its key."""
    channel = "slack:T0001:C0NEWCHAN"
    with world.store() as store:
        admin.bind(store, channel, "alpha", world.clock.now())
    barrier = threading.Barrier(12)
    replies: list[str] = []

    def first_message(n: int) -> None:
        message = InboundMessage(
            platform="slack",
            message_id=f"Ev-new-{n}",
            conversation=channel,
            sender=f"slack:T0001:U{n:04d}",
            text=f"update: first words {n}",
            received_at=world.clock.now(),
            reference={"channel": "C0NEWCHAN", "team_id": "T0001"},
        )
        barrier.wait()
        replies.extend(r.text for r in Dispatcher(world.engine, world.clock).handle(message))

    threads = [threading.Thread(target=first_message, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(replies) == 12 and all("recorded for Alpha" in r for r in replies), replies
    with world.store() as store:
        rows = store.session.exec(select(ConversationReference).where(ConversationReference.key == channel))
        assert [r.reference["channel"] for r in rows] == ["C0NEWCHAN"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_message_ids_seen_before_the_inbox_stay_seen(kind: str, tmp_path: Path) -> None:
    """Upgrading moves the ids of processed messages into the inbox: a platform retry after the
    upgrade is still a duplicate."""
    with _empty_database(kind, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine, "0003")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO processed_messages (platform, message_id, received_at) "
                    "VALUES ('slack', 'Ev-before', '2026-11-27 10:00:00')"
                )
            )
        upgrade(engine)
        clock = FixedClock(NOW)
        with open_store(engine) as store:
            admin.add_city(store, "alpha", "Alpha", "UTC", NOW)
            admin.add_member(store, "slack:T0001:U0001", "alpha", NOW)
        retry = InboundMessage(
            platform="slack",
            message_id="Ev-before",
            conversation="slack:T0001:U0001",
            sender="slack:T0001:U0001",
            text="update: sent before the upgrade",
            received_at=NOW,
            direct=True,
        )
        assert Dispatcher(engine, clock).handle(retry) == []
        with open_store(engine) as store:
            assert store.session.exec(select(Update)).all() == []
        engine.dispose()


MX_TYPED, MX_WHATSAPP = "whatsapp:+525512345678", "whatsapp:+5215512345678"
BR_WHATSAPP, BR = "whatsapp:+556188887777", "whatsapp:+5561988887777"
BR_LANDLINE = "whatsapp:+556132345678"
AR_TYPED, AR = "whatsapp:+541123456789", "whatsapp:+5491123456789"


def _city_at_0010(store: Store, slug: str) -> int:
    """A city written as the schema of 0010 has it: the model has columns added since."""
    names = ("slug", "name", "zone", "language")
    cities = table("cities", *map(column, names), column("created_at", UTCDateTime()))
    row = {"slug": slug, "name": slug.title(), "zone": "UTC", "language": "en", "created_at": NOW}
    return store.session.execute(insert(cities).values(row).returning(column("id"))).scalar_one()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_upgrade_stores_each_whatsapp_number_in_one_form_and_merges_a_person_rostered_twice(
    kind: str, tmp_path: Path
) -> None:
    """Before 0011 a number rostered as people write it and the form WhatsApp sends were two people."""
    later = NOW + timedelta(days=1)
    reminder = "|reminder-60|1@2026-12-01T16:00Z"
    with _empty_database(kind, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine, "0010")
        with open_store(engine) as store:
            alpha, beta = _city_at_0010(store, "alpha"), _city_at_0010(store, "beta")
            # The admin rostered the number as people write it; the phone then joined another team with a
            # code, under the form WhatsApp gives, and said stop there.
            store.add_person(
                Person(identity=MX_TYPED, name="Marisol", role="member", city_id=alpha, created_at=NOW)
            )
            store.add_person(
                Person(identity=MX_WHATSAPP, role="member", city_id=beta, stopped_at=later, created_at=later)
            )
            store.add_person(Person(identity=BR_WHATSAPP, role="coach", created_at=NOW), [alpha])
            store.add_person(Person(identity=BR_LANDLINE, role="member", city_id=alpha, created_at=NOW))
            store.add_person(Person(identity=AR_TYPED, role="member", city_id=beta, created_at=NOW))
            store.session.add(
                Update(city_id=beta, author=MX_WHATSAPP, text="hola", platform="whatsapp", created_at=later)
            )
            store.save_reference(MX_TYPED, "whatsapp", {"last_inbound_at": NOW.isoformat()}, NOW)
            store.save_reference(MX_WHATSAPP, "whatsapp", {"last_inbound_at": later.isoformat()}, later)
            for who in (MX_TYPED, MX_WHATSAPP):  # the same reminder, planned for each of the two people
                store.enqueue(due_message(who + reminder, who, later, kind="reminder-60"))
            store.enqueue(due_message(f"blocker_opened:3:{BR_WHATSAPP}", BR_WHATSAPP, NOW))
            pending = InboundMessage(
                platform="whatsapp",
                message_id="SM-before",
                conversation=MX_WHATSAPP,
                sender=MX_WHATSAPP,
                text="update: sent before the upgrade",
                received_at=later,
                reference={"last_inbound_at": later.isoformat()},
                direct=True,
            )
            store.session.add(
                InboxMessage(
                    platform="whatsapp",
                    message_id="SM-before",
                    message=pending.model_dump(mode="json"),
                    next_attempt_at=later,
                    received_at=later,
                )
            )
        upgrade(engine)
        with open_store(engine) as store:
            people = {p.identity: p for p in store.session.exec(select(Person))}
            assert set(people) == {MX_TYPED, BR, BR_LANDLINE, AR}
            # The older row stays, with its team; the stop said under the other form holds.
            marisol = people[MX_TYPED]
            assert (marisol.name, marisol.city_id, marisol.stopped_at) == ("Marisol", alpha, later)
            assert store.coached_city_ids(people[BR]) == [alpha]
            assert [u.author for u in store.session.exec(select(Update))] == [MX_TYPED]
            # One way to reach the number: the newest, sent to the form it wrote from.
            [reference] = store.session.exec(select(ConversationReference)).all()
            assert reference.key == MX_TYPED
            assert reference.reference == {"last_inbound_at": later.isoformat(), "address": MX_WHATSAPP}
            # The reminder goes once; a key names its recipient in its stored form.
            rows = {r.key: r for r in store.session.exec(select(OutboxMessage))}
            assert set(rows) == {MX_TYPED + reminder, MX_WHATSAPP + reminder, f"blocker_opened:3:{BR}"}
            assert rows[MX_TYPED + reminder].status == "pending"
            assert (rows[MX_WHATSAPP + reminder].status, rows[MX_WHATSAPP + reminder].recipient) == (
                "dropped",
                MX_TYPED,
            )
            assert rows[f"blocker_opened:3:{BR}"].recipient == BR
            [inbox] = store.session.exec(select(InboxMessage)).all()
            assert inbox.message is not None
            assert (inbox.message["sender"], inbox.message["conversation"]) == (MX_TYPED, MX_TYPED)
            assert inbox.message["reference"]["address"] == MX_WHATSAPP
        engine.dispose()


def test_rows_read_without_the_orm_can_be_read_first_thing_in_a_new_process() -> None:
    # A fresh interpreter, which has run no ORM query: the state a delivery process starts in.
    script = (
        "from datetime import UTC, datetime\n"
        "from store.models import OutboxMessage\n"
        "due = datetime(2026, 1, 1, tzinfo=UTC)\n"
        "row = OutboxMessage.model_construct(id=7, attempts=1, next_attempt_at=due)\n"
        "print(row.id, row.attempts, row.next_attempt_at.year)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.split()) == (0, ["7", "1", "2026"]), done.stderr


def test_the_receipts_of_a_group_commit_s_sends_are_written_in_one_statement_and_kept_once(
    engine: Engine,
) -> None:
    with open_store(engine) as store:
        for key in ("a", "b"):
            store.enqueue(due_message(f"reply|whatsapp|{key}|0", "whatsapp:+15550000001", NOW))
    with open_store(engine) as store:
        first, second = (row.id for row in store.outbox())
        assert first is not None and second is not None
        statements: list[str] = []

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            store.add_receipts(
                [
                    (first, "whatsapp", ("SM1", "SM2"), NOW),
                    (second, "whatsapp", ("SM3",), NOW + timedelta(seconds=1)),
                ]
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) == 1
        assert "RETURNING" not in statements[0].upper()  # nothing reads back what was written
        # A status callback's id recorded again (a send retried after its commit was lost) stays whose it was.
        store.add_receipts([(second, "whatsapp", ("SM1",), NOW)])
    with open_store(engine) as store:
        assert store.parts_sent(first) == ["SM1", "SM2"]
        assert store.parts_sent(second) == ["SM3"]
        found = store.sent_as("whatsapp", "SM1")
        assert found is not None and found.id == first
