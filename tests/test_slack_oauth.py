# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""Multi-workspace OAuth: install and redirect routes, installations in the project's database, the
stored token used for the workspace's events, and cleanup when the app is uninstalled. OAuth states
expire, are used once and are bounded in number."""

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, insert, select

from adapters.slack.oauth_stores import (
    MAX_LIVE_STATES,
    STATE_EXPIRES_SECONDS,
    StateLimitReached,
    StateStore,
)
from bot.core.clock import FixedClock
from bot.runtime.serve import build_server
from store.slack_oauth_tables import slack_bots, slack_installations, slack_oauth_states
from tests.conftest import TestBot
from tests.slack_fixtures import Running, mock, slack_settings, slack_world  # noqa: F401
from tests.slack_harness import MockSlack, event_body, serving


def _oauth_server(slack_world: TestBot, mock: MockSlack, **extra: Any) -> Iterator[Running]:
    settings = slack_settings(
        mock,
        slack_bot_token=None,
        slack_client_id="1111.2222",
        slack_client_secret="client-secret-value",
        public_base_url="https://bot.example.org",
        **extra,
    )
    server = build_server(settings, slack_world.engine, slack_world.clock)
    with serving(server.app) as url:
        yield Running(url, server, mock, slack_world)


@pytest.fixture
def oauth(slack_world: TestBot, mock: MockSlack) -> Iterator[Running]:
    yield from _oauth_server(slack_world, mock)


@pytest.fixture
def encrypted_oauth(slack_world: TestBot, mock: MockSlack) -> Iterator[Running]:
    yield from _oauth_server(slack_world, mock, slack_token_encryption_key=Fernet.generate_key().decode())


def _rows(run: Running, table: object) -> list[dict[str, object]]:
    with run.bot.engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(table)).mappings()]  # type: ignore[call-overload]


def _install(run: Running) -> httpx.Response:
    """A workspace admin's browser through /slack/install and back to /slack/oauth_redirect."""
    with httpx.Client(base_url=run.url) as browser:
        page = browser.get("/slack/install")
        assert page.status_code == 200
        state = re.search(r"state=([0-9a-f-]+)", page.text)
        assert state is not None and "client_id=1111.2222" in page.text
        assert "redirect_uri=https://bot.example.org/slack/oauth_redirect" in page.text.replace(
            "%3A", ":"
        ).replace("%2F", "/")
        assert len(_rows(run, slack_oauth_states)) == 1
        # The state cookie is `Secure`: a browser sends it back over https, so the test hands it over.
        cookie = f"slack-app-oauth-state={page.cookies['slack-app-oauth-state']}"
        params, headers = {"code": "code-123", "state": state.group(1)}, {"Cookie": cookie}
        done = browser.get("/slack/oauth_redirect", params=params, headers=headers)
        assert done.status_code == 200, done.text
        return browser.get("/slack/oauth_redirect", params=params, headers=headers)


def test_install_redirect_event_and_uninstall(oauth: Running) -> None:
    replayed = _install(oauth)
    assert replayed.status_code == 401  # a state is used once, even with its cookie
    [exchange] = oauth.mock.named("oauth.v2.access")
    assert exchange.params["code"] == "code-123"
    [installation] = _rows(oauth, slack_installations)
    assert installation["team_id"] == "T0002" and installation["bot_token"] == "xoxb-installed-token"
    assert _rows(oauth, slack_oauth_states) == []

    mention = {
        "type": "app_mention",
        "channel": "C0OTHER",
        "user": "U0SOMEONE",
        "text": "<@UBOT0002> help",
        "ts": "7.1",
    }
    assert oauth.event(event_body(mention, "EvOAUTH", team="T0002")).status_code == 200
    [post] = oauth.mock.wait_for("chat.postMessage")
    assert post.headers["authorization"] == "Bearer xoxb-installed-token"
    assert post.params["channel"] == "C0OTHER"

    uninstalled = event_body({"type": "app_uninstalled", "ts": "7.2"}, "EvGONE", team="T0002")
    assert oauth.event(uninstalled).status_code == 200
    oauth.settle()
    from tests.slack_harness import wait_until

    wait_until(
        lambda: _rows(oauth, slack_installations) == [] and _rows(oauth, slack_bots) == [],
        10,
        "the installation to be deleted",
    )


def test_a_bad_oauth_state_is_refused(oauth: Running) -> None:
    response = httpx.get(f"{oauth.url}/slack/oauth_redirect", params={"code": "c", "state": "forged"})
    assert response.status_code in (400, 401, 403)
    assert oauth.mock.named("oauth.v2.access") == []
    assert _rows(oauth, slack_installations) == []


def test_events_of_a_workspace_that_never_installed_are_not_answered(oauth: Running) -> None:
    mention = {
        "type": "app_mention",
        "channel": "C0X",
        "user": "U0X",
        "text": "<@UBOT0002> help",
        "ts": "8.1",
    }
    oauth.event(event_body(mention, "EvSTRANGER", team="T0404"))
    oauth.settle()
    assert oauth.mock.named("chat.postMessage") == []


def test_with_a_key_the_installed_token_is_stored_encrypted_and_used(encrypted_oauth: Running) -> None:
    assert "stored tokens encrypted" in encrypted_oauth.server.status[0]
    _install(encrypted_oauth)
    for table in (slack_installations, slack_bots):
        [row] = _rows(encrypted_oauth, table)
        assert str(row["bot_token"]).startswith("enc:v1:")
        assert "xoxb-installed-token" not in str(row)
    mention = {
        "type": "app_mention",
        "channel": "C0E",
        "user": "U0E",
        "text": "<@UBOT0002> help",
        "ts": "9.1",
    }
    assert encrypted_oauth.event(event_body(mention, "EvENC", team="T0002")).status_code == 200
    [post] = encrypted_oauth.mock.wait_for("chat.postMessage")
    assert post.headers["authorization"] == "Bearer xoxb-installed-token"


def test_install_is_refused_with_429_once_too_many_states_are_live(oauth: Running) -> None:
    far = datetime(2100, 1, 1)  # live whichever clock the server's state store reads
    with oauth.bot.engine.begin() as connection:
        connection.execute(
            insert(slack_oauth_states),
            [{"state": f"flood-{n}", "expire_at": far} for n in range(MAX_LIVE_STATES)],
        )
    refused = httpx.get(f"{oauth.url}/slack/install")
    assert refused.status_code == 429
    assert "try again" in refused.json()["error"]
    assert "slack-app-oauth-state" not in refused.cookies
    assert len(_rows(oauth, slack_oauth_states)) == MAX_LIVE_STATES


# -- the state store on its own, with a clock the test moves ----------------------------------------


def _states(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(slack_oauth_states)).mappings()]


def test_a_state_expires_and_is_swept_by_the_next_issue(engine: Engine, clock: FixedClock) -> None:
    store = StateStore(engine, clock=clock)
    old = store.issue()
    [row] = _states(engine)
    assert row["state"] == old
    assert row["expire_at"] == clock.now().replace(tzinfo=None) + timedelta(seconds=STATE_EXPIRES_SECONDS)

    clock.set(clock.now() + timedelta(seconds=STATE_EXPIRES_SECONDS))
    assert store.consume(old) is False  # expired at expire_at, not a second later
    new = store.issue()
    assert [row["state"] for row in _states(engine)] == [new]
    assert store.consume(new) is True


def test_a_consumed_state_is_deleted_and_cannot_be_reused(engine: Engine, clock: FixedClock) -> None:
    store = StateStore(engine, clock=clock)
    state, other = store.issue(), store.issue()
    assert store.consume(state) is True
    assert [row["state"] for row in _states(engine)] == [other]
    assert store.consume(state) is False


@pytest.mark.parametrize("forged", [None, "", "forged", "x" * 5000, "abc\x00def"])
def test_a_state_it_never_issued_is_refused_quietly(
    engine: Engine, clock: FixedClock, forged: str | None
) -> None:
    store = StateStore(engine, clock=clock)
    store.issue()
    assert store.consume(forged) is False
    assert len(_states(engine)) == 1


def test_issuing_past_the_bound_is_refused_until_states_expire(engine: Engine, clock: FixedClock) -> None:
    start = clock.now()
    store = StateStore(engine, max_live=3, clock=clock)
    first, _ = store.issue(), store.issue()
    clock.set(start + timedelta(seconds=60))
    store.issue()
    with pytest.raises(StateLimitReached) as refused:
        store.issue()
    assert refused.value.status_code == 429
    assert len(_states(engine)) == 3

    assert store.consume(first) is True  # a finished install frees its place
    store.issue()
    with pytest.raises(StateLimitReached):
        store.issue()

    # The second state issued at the start expires: the sweep makes room for one more, and no more.
    clock.set(start + timedelta(seconds=STATE_EXPIRES_SECONDS))
    store.issue()
    with pytest.raises(StateLimitReached):
        store.issue()
    assert len(_states(engine)) == 3


async def test_the_async_interface_bolt_calls(engine: Engine, clock: FixedClock) -> None:
    store = StateStore(engine, clock=clock)
    state = await store.async_issue()
    assert await store.async_consume(state) is True
    assert await store.async_consume(state) is False


def test_a_flood_of_refusals_logs_once(
    engine: Engine, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(engine, max_live=1, clock=clock)
    store.issue()
    for _ in range(5):
        with pytest.raises(StateLimitReached):
            store.issue()
    assert [r.message for r in caplog.records] == ["slack installs refused: too many OAuth states live"]
