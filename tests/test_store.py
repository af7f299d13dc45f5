"""The store on each backend: migrations from an empty database, WAL, and queries the coaches rely on."""

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from bot import admin
from store.db import alembic_config, make_engine, normalize_url, upgrade
from store.models import Blocker, OutboxMessage, Update
from store.repo import open_store
from tests.conftest import NOW, PG_URL, due_message, scratch_postgres_database

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
                Update(
                    city_id=city.id,
                    author="console:x",
                    text=f"{city.slug}-{days}",  # type: ignore[arg-type]
                    platform="console",
                    created_at=NOW - timedelta(days=days),
                )
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
