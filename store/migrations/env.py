"""Alembic environment: the engine comes from `store.db.upgrade`, never from an ini file.

Alembic begins the transaction itself, so that a migration may leave it for a statement PostgreSQL
runs only outside one (`op.get_context().autocommit_block()`, for `CREATE INDEX CONCURRENTLY`)."""

from alembic import context
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
