"""Scratch PostgreSQL databases, created and dropped around a test run or a benchmark."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.db import normalize_url


@contextmanager
def scratch_postgres_database(server_url: str, prefix: str = "cda_scratch") -> Iterator[str]:
    """A new, empty database on the server of `server_url`; its URL, then it is dropped."""
    server = make_url(normalize_url(server_url))
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    maintenance = create_engine(server, isolation_level="AUTOCOMMIT")
    with maintenance.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with maintenance.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        maintenance.dispose()
