"""Rows written in bulk, with values made ready here, where the ORM's work per row would cost more
than the database's: the in-process message path's two inserts (`insert_ignoring`, a few hundred rows
to a statement) and the scheduler's outbox rows (`insert_rows`, thousands at a time)."""

import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from store.repo import Store
from store.types import driver_instant

ROWS_PER_STATEMENT = 500  # under SQLite's 32,766 parameters for any table here


def insert_ignoring(store: Store, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> int:
    """Insert `rows` into `table`, leaving out any whose unique key is taken; how many were written.
    Columns not in a row are written as NULL, so give every column that has no database default."""
    statements = _inserts(store, table, columns, rows)
    connection = store.session.connection()
    return sum(connection.exec_driver_sql(sql, values).rowcount for sql, values in statements)


def insert_returning(
    store: Store, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """`insert_ignoring`, giving the `returning` columns of each row written, in no set order."""
    back = " RETURNING " + ", ".join(f'"{c}"' for c in returning)
    statements = _inserts(store, table, columns, rows)
    connection = store.session.connection()
    written = [connection.exec_driver_sql(sql + back, values).all() for sql, values in statements]
    return [tuple(row) for rows_written in written for row in rows_written]


def _inserts(
    store: Store, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[str, tuple[Any, ...]]]:
    if not rows:
        return []
    postgres = store.session.get_bind().dialect.name == "postgresql"
    names = ", ".join(f'"{c}"' for c in columns)
    row_marks = "(" + ", ".join(("%s" if postgres else "?") for _ in columns) + ")"
    # Recipients of one message share its payload, and a pass its instants: each converted once.
    done: dict[Any, Any] = {}
    # Many rows to a statement: one round trip for a few hundred rows, where an executemany on
    # PostgreSQL makes one per row. Made ready before the first statement, which on SQLite takes
    # the write lock when it opens the transaction (a digest's JSON takes a while to write out).
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        marks = ", ".join(row_marks for _ in chunk)
        sql = f"INSERT INTO {table} ({names}) VALUES {marks} ON CONFLICT DO NOTHING"
        statements.append((sql, tuple(value(row.get(c), postgres, done) for row in chunk for c in columns)))
    return statements


def insert_rows(
    store: Store, table: str, columns: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Insert `rows`, each already as the driver takes it (`value`), leaving out any whose unique key
    is taken; how many were written. For thousands of rows: SQLite binds each row to one prepared
    statement (an executemany, no SQL text to build or parse), PostgreSQL takes them by binary COPY
    (`types`: each column's type as PostgreSQL names it; a JSON column's binary form is its text)."""
    if not rows:
        return 0
    connection = store.session.connection()
    names = ", ".join(f'"{c}"' for c in columns)
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        copied = _copy(connection.connection.driver_connection, table, names, types, rows)
        if copied is not None:
            return copied
    mark = "%s" if postgres else "?"
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(mark for _ in columns)}) ON CONFLICT DO NOTHING"
    return connection.exec_driver_sql(sql, list(rows)).rowcount  # type: ignore[arg-type]


def _copy(
    driver: Any, table: str, names: str, types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int | None:
    """COPY `rows` in, all of them; None (and nothing written) when a unique key is taken, which COPY
    cannot skip. A savepoint keeps the caller's transaction usable after such a failure."""
    from psycopg.errors import UniqueViolation  # PostgreSQL only

    with driver.cursor() as cursor:
        cursor.execute("SAVEPOINT bulk_copy")
        try:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        except UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT bulk_copy")
            return None
        cursor.execute("RELEASE SAVEPOINT bulk_copy")
    return len(rows)


def value(given: Any, postgres: bool, done: dict[Any, Any]) -> Any:
    """`given` as the driver takes it, the way SQLAlchemy would have written it."""
    if given is None or (isinstance(given, int | str) and not isinstance(given, StrEnum)):
        return given
    key = id(given) if isinstance(given, dict | list) else given
    converted = done.get(key)
    if converted is None:
        converted = done[key] = _converted(given, postgres)
    return converted


def _converted(given: Any, postgres: bool) -> Any:
    if isinstance(given, dict | list):
        return json.dumps(given)
    if isinstance(given, datetime):
        return driver_instant(given, postgres)
    if isinstance(given, StrEnum):
        return given.value
    return given
