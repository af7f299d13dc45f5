# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""Multi-workspace OAuth: install and redirect routes, installations in the project's database, the
stored token used for the workspace's events, and cleanup when the app is uninstalled."""

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from bot.runtime.serve import build_server
from store.slack_oauth_tables import slack_bots, slack_installations, slack_oauth_states
from tests.conftest import TestBot
from tests.slack_fixtures import Running, mock, slack_settings, slack_world  # noqa: F401
from tests.slack_harness import MockSlack, event_body, serving


@pytest.fixture
def oauth(slack_world: TestBot, mock: MockSlack) -> Iterator[Running]:
    settings = slack_settings(
        mock,
        slack_bot_token=None,
        slack_client_id="1111.2222",
        slack_client_secret="client-secret-value",
        public_base_url="https://bot.example.org",
    )
    server = build_server(settings, slack_world.engine, slack_world.clock)
    with serving(server.app) as url:
        yield Running(url, server, mock, slack_world)


def _rows(run: Running, table: object) -> list[dict[str, object]]:
    with run.bot.engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(table)).mappings()]  # type: ignore[call-overload]


def test_install_redirect_event_and_uninstall(oauth: Running) -> None:
    with httpx.Client(base_url=oauth.url) as browser:
        page = browser.get("/slack/install")
        assert page.status_code == 200
        state = re.search(r"state=([0-9a-f-]+)", page.text)
        assert state is not None and "client_id=1111.2222" in page.text
        assert "redirect_uri=https://bot.example.org/slack/oauth_redirect" in page.text.replace(
            "%3A", ":"
        ).replace("%2F", "/")
        assert len(_rows(oauth, slack_oauth_states)) == 1
        # The state cookie is `Secure`: a browser sends it back over https, so the test hands it over.
        cookie = f"slack-app-oauth-state={page.cookies['slack-app-oauth-state']}"
        done = browser.get(
            "/slack/oauth_redirect",
            params={"code": "code-123", "state": state.group(1)},
            headers={"Cookie": cookie},
        )
        assert done.status_code == 200, done.text
    [exchange] = oauth.mock.named("oauth.v2.access")
    assert exchange.params["code"] == "code-123"
    [installation] = _rows(oauth, slack_installations)
    assert installation["team_id"] == "T0002" and installation["bot_token"] == "xoxb-installed-token"
    assert _rows(oauth, slack_oauth_states) == []  # the state is used once

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
