"""Bolt's installation and OAuth state stores, kept in the project's database.

slack_sdk's async SQLAlchemy stores want an async engine (aiosqlite, asyncpg): a second driver and a
second pool for a few rows read once per request. The sync stores on the project's own engine, called
off the event loop, keep one driver and one set of tables that `cda-bot db upgrade` creates
(migration 0002)."""

import asyncio
import copy
import logging
from datetime import UTC, datetime, timedelta
from logging import Logger
from typing import Any, TypeVar
from uuid import uuid4

from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import Engine, MetaData, delete, func, insert, or_, select
from starlette.exceptions import HTTPException

from adapters.slack.token_crypto import PREFIX, TokenCipher
from bot.core.clock import Clock, SystemClock

log = logging.getLogger("cda_bot.slack.oauth")

STATE_EXPIRES_SECONDS = 600
# Install attempts in flight across every replica. Each unauthenticated GET /slack/install writes a row,
# so this bounds the table, and the rate of installs to MAX_LIVE_STATES per STATE_EXPIRES_SECONDS.
# A real workspace admin needs one; a thousand in ten minutes is someone else.
MAX_LIVE_STATES = 1000
# Longer values are not states this store issued, and PostgreSQL refuses NUL in text.
_MAX_STATE_LENGTH = 200

TOKEN_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")
Record = TypeVar("Record", Installation, Bot)


class InstallationStore(AsyncInstallationStore):
    """slack_sdk's store, with tokens encrypted before they are written and decrypted after they are
    read when a key is given (see token_crypto)."""

    def __init__(self, client_id: str, engine: Engine, encryption_key: str | None = None) -> None:
        self.sync = SQLAlchemyInstallationStore(client_id=client_id, engine=engine, logger=log)
        self.cipher = TokenCipher(encryption_key)

    @property
    def logger(self) -> Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await asyncio.to_thread(self._save, installation)

    async def async_save_bot(self, bot: Bot) -> None:
        await asyncio.to_thread(self._save_bot, bot)

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        return await asyncio.to_thread(
            self._find_bot,
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        return await asyncio.to_thread(
            self._find_installation,
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            is_enterprise_install=is_enterprise_install,
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await asyncio.to_thread(self.sync.delete_bot, enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await asyncio.to_thread(
            self.sync.delete_installation, enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
        )

    async def async_check_key(self) -> None:
        """Raises TokenDecryptionError if a stored token cannot be read with the configured key, so a
        wrong key can stop `serve` at start instead of failing each workspace's first event."""
        await asyncio.to_thread(self._check_key)

    # -- off the event loop ------------------------------------------------------------------------
    def _save(self, installation: Installation) -> None:
        # save() also writes installation.to_bot(): sealing the copy seals both rows.
        self.sync.save(self._sealed(installation))

    def _save_bot(self, bot: Bot) -> None:
        self.sync.save_bot(self._sealed(bot))

    def _find_bot(self, **where: Any) -> Bot | None:
        found = self.sync.find_bot(**where)
        return self._opened(found) if found is not None else None

    def _find_installation(self, **where: Any) -> Installation | None:
        found = self.sync.find_installation(**where)
        return self._opened(found) if found is not None else None

    def _check_key(self) -> None:
        # Every encrypted row, not one: a key dropped from the list may have sealed only older rows.
        # There is a row per workspace (and per reinstall), a few hundred decryptions at most.
        for table in (self.sync.installations, self.sync.bots):
            columns = [table.c[name] for name in TOKEN_FIELDS if name in table.c]
            query = select(*columns).where(
                table.c.client_id == self.sync.client_id,
                or_(*(column.startswith(PREFIX) for column in columns)),
            )
            with self.sync.engine.connect() as connection:
                rows = connection.execute(query).all()
            for row in rows:
                for value in row:
                    self.cipher.open(value)

    def _sealed(self, record: Record) -> Record:
        # A copy: Bolt goes on using the object it saved, with tokens it can send.
        sealed = copy.copy(record)
        table = self.sync.bots if isinstance(record, Bot) else self.sync.installations
        for name in TOKEN_FIELDS:
            if hasattr(sealed, name):
                value = self.cipher.seal(getattr(sealed, name))
                limit = getattr(table.c[name].type, "length", None)
                if value is not None and limit is not None and len(value) > limit:
                    # PostgreSQL would refuse it and SQLite keep it: refuse on both, naming no token.
                    raise TokenTooLong(f"slack: the encrypted {name} is longer than its column ({limit})")
                setattr(sealed, name, value)
        return sealed

    def _opened(self, record: Record) -> Record:
        for name in TOKEN_FIELDS:
            if hasattr(record, name):
                setattr(record, name, self.cipher.open(getattr(record, name)))
        return record


class TokenTooLong(ValueError):
    """An encrypted token does not fit slack_sdk's column; widening the column is a migration."""


class StateLimitReached(HTTPException):
    """Too many install attempts in flight. Bolt lets an exception from `async_issue` out of its install
    handler, and the server answers an HTTPException with its status and a short JSON error."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            status_code=429,
            detail="too many Slack installs in progress; try again in a few minutes",
            headers={"Retry-After": str(retry_after)},
        )


class StateStore(AsyncOAuthStateStore):
    """OAuth states that expire, are used once, and are bounded in number.

    slack_sdk's own store never deletes an unused state and checks a state and deletes it in two steps,
    so two callbacks racing with one state could both pass; here the delete is the check."""

    def __init__(
        self,
        engine: Engine,
        expiration_seconds: int = STATE_EXPIRES_SECONDS,
        max_live: int = MAX_LIVE_STATES,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.expiration = timedelta(seconds=expiration_seconds)
        self.max_live = max_live
        self.clock = clock or SystemClock()
        self._refusing = False
        self.table = SQLAlchemyOAuthStateStore.build_oauth_states_table(
            MetaData(), SQLAlchemyOAuthStateStore.default_table_name
        )

    @property
    def logger(self) -> Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.issue)

    async def async_consume(self, state: str) -> bool:
        return await asyncio.to_thread(self.consume, state)

    def issue(self) -> str:
        """A new state, after sweeping the expired ones; StateLimitReached when MAX_LIVE_STATES are live.

        Replicas may each pass the count at the same moment, so the bound can be overshot by the number
        of concurrent installs: it bounds a flood, it does not have to be exact."""
        now = self._now()
        state = str(uuid4())
        with self.engine.begin() as connection:
            connection.execute(delete(self.table).where(self.table.c.expire_at <= now))
            live = connection.execute(select(func.count()).select_from(self.table)).scalar_one()
            full = live >= self.max_live
            if not full:
                connection.execute(insert(self.table).values(state=state, expire_at=now + self.expiration))
        if full:  # raised after the commit, so the sweep is kept
            if not self._refusing:  # once when refusals start, not once per request of a flood
                log.warning("slack installs refused: too many OAuth states live", extra={"live": live})
            self._refusing = True
            raise StateLimitReached(int(self.expiration.total_seconds()))
        self._refusing = False
        return state

    def consume(self, state: str | None) -> bool:
        """True once for a state this store issued and that has not expired; False ever after."""
        if not state or len(state) > _MAX_STATE_LENGTH or "\x00" in state:
            return False
        now = self._now()
        with self.engine.begin() as connection:
            deleted = connection.execute(
                delete(self.table).where(self.table.c.state == state, self.table.c.expire_at > now)
            ).rowcount
        return deleted > 0

    def _now(self) -> datetime:
        # The column is a naive DateTime (slack_sdk's), holding UTC.
        return self.clock.now().astimezone(UTC).replace(tzinfo=None)
