"""Engines and migrations: SQLite (WAL) by default, PostgreSQL through DATABASE_URL."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (`postgres://`, `postgresql://`) and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A database that does not answer is an error within seconds, not a request that hangs.
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def is_transient(error: BaseException) -> bool:
    """A failure of the database itself (unreachable, restarting, locked), which another try may not
    meet, as opposed to a statement that will fail the same way every time."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OperationalError | InterfaceError | DisconnectionError | TimeoutError)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module's own transaction handling breaks savepoints (a RELEASE would commit);
    # turn it off and let `_sqlite_begin` open every transaction.
    dbapi_connection.isolation_level = None
    # WAL lets readers go on while one writer writes; foreign keys are off in SQLite unless asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    if connection.get_execution_options().get(READER):
        # A transaction that only reads takes no lock at all: WAL gives it a snapshot, and writers
        # (an inbound message) never wait for it.
        connection.exec_driver_sql("BEGIN")
        return
    # One writer at a time, taken up front: a transaction that reads and then writes never fails
    # halfway because another writer committed in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


READER = "cda_reader"


def reader(engine: Engine) -> Engine:
    """The same database for transactions that only read (on SQLite they take no write lock)."""
    return engine.execution_options(**{READER: True})


# Alembic is imported only to migrate: with Mako and Pygments it weighs about 9 MB, which a running
# server would otherwise keep for nothing.
def alembic_config(engine: Engine) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
