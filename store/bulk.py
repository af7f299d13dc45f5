"""Rows written a few hundred to a statement, with values made ready here, where the ORM's work per
row would cost more than the database's: the scheduler's outbox rows, the in-process message path's
two inserts."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from store.repo import Store

ROWS_PER_STATEMENT = 500  # under SQLite's 32,766 parameters for any table here


def insert_ignoring(store: Store, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> int:
    """Insert `rows` into `table`, leaving out any whose unique key is taken; how many were written.
    Columns not in a row are written as NULL, so give every column that has no database default."""
    if not rows:
        return 0
    postgres = store.session.get_bind().dialect.name == "postgresql"
    names = ", ".join(f'"{c}"' for c in columns)
    row_marks = "(" + ", ".join(("%s" if postgres else "?") for _ in columns) + ")"
    # Recipients of one message share its payload, and a pass its instants: each converted once.
    done: dict[Any, Any] = {}
    # Many rows to a statement: one round trip for a few hundred rows, where an executemany on
    # PostgreSQL makes one per row. Made ready before the first statement, which on SQLite takes
    # the write lock when it opens the transaction (a digest's JSON takes a while to write out).
    statements = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        marks = ", ".join(row_marks for _ in chunk)
        sql = f"INSERT INTO {table} ({names}) VALUES {marks} ON CONFLICT DO NOTHING"
        statements.append((sql, tuple(value(row.get(c), postgres, done) for row in chunk for c in columns)))
    connection = store.session.connection()
    return sum(connection.exec_driver_sql(sql, values).rowcount for sql, values in statements)


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
        naive = given.astimezone(UTC).replace(tzinfo=None)
        # As SQLAlchemy writes instants to SQLite, so that they compare as text with its own.
        return naive if postgres else naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(given, StrEnum):
        return given.value
    return given
