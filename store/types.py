"""Column types shared by the tables."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def driver_instant(value: datetime, postgres: bool) -> datetime | str:
    """`value` as UTCDateTime writes it, for SQL sent to the driver directly: naive UTC, and on SQLite
    the text SQLAlchemy writes, so that it compares as text with its own."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given for a UTC column")
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive if postgres else naive.strftime("%Y-%m-%d %H:%M:%S.%f")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored as naive UTC and read back as an aware UTC datetime.

    SQLite has no time zone type and PostgreSQL's would convert to the session zone; storing
    naive UTC gives both the same, comparable values.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)
