"""Which Teams the settings ask for: local development without an app id, a multi- or single-tenant
registration with one; a half-configured Teams stops `serve` with one line."""

from pathlib import Path

import pytest

from adapters.teams.config import TeamsConfigError, teams_config
from bot.runtime.settings import Settings
from tests.platform_run import serve_refusal
from tests.teams_harness import TEAMS_ENV, TeamsSettings

TENANT = "0f0f0f0f-1111-4222-8333-444444444444"


def _settings(**values: str) -> Settings:
    return TeamsSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_without_any_teams_setting_teams_is_off() -> None:
    assert teams_config(_settings()) is None


def test_local_development_without_an_app_id_is_local_only() -> None:
    config = teams_config(_settings(microsoft_local_development="true"))
    assert config is not None and config.local
    assert config.describe().startswith("teams: local only (no MICROSOFT_APP_ID")


def test_local_development_never_turns_the_token_check_off() -> None:
    with pytest.raises(TeamsConfigError, match="for running without MICROSOFT_APP_ID"):
        teams_config(
            _settings(microsoft_app_id="app", microsoft_app_password="s", microsoft_local_development="1")
        )


def test_a_multi_tenant_bot_gets_its_tokens_from_the_bot_frameworks_tenant() -> None:
    config = teams_config(_settings(microsoft_app_id="app", microsoft_app_password="secret"))
    assert config is not None
    assert config.app_type == "MultiTenant"
    assert config.authority_url == "https://login.microsoftonline.com/botframework.com"
    assert config.openid_metadata_url == "https://login.botframework.com/v1/.well-known/openidconfiguration"
    assert "secret" not in config.describe() and "secret" not in repr(config)
    assert config.describe() == "teams: on (MultiTenant app app, tokens verified at POST /api/messages)"


def test_a_single_tenant_bot_gets_its_tokens_from_its_own_tenant() -> None:
    config = teams_config(
        _settings(
            microsoft_app_id="app",
            microsoft_app_password="secret",
            microsoft_app_type="singletenant",
            microsoft_app_tenant_id=TENANT,
        )
    )
    assert config is not None and config.app_type == "SingleTenant"
    assert config.authority_url == f"https://login.microsoftonline.com/{TENANT}"


def test_the_overrides_are_read_when_settings_have_them() -> None:
    config = teams_config(
        _settings(
            microsoft_app_id="app",
            microsoft_app_password="secret",
            microsoft_openid_metadata_url="http://127.0.0.1:9/v1/.well-known/openidconfiguration",
            microsoft_authority_url="https://127.0.0.1:9/botframework.com/",
        )
    )
    assert config is not None
    assert config.openid_metadata_url == "http://127.0.0.1:9/v1/.well-known/openidconfiguration"
    assert config.authority_url == "https://127.0.0.1:9/botframework.com"


HALF = [
    ({"MICROSOFT_APP_PASSWORD": "secret-value-1"}, "MICROSOFT_APP_ID is missing"),
    ({"MICROSOFT_APP_ID": "app"}, "MICROSOFT_APP_PASSWORD is missing"),
    (
        {
            "MICROSOFT_APP_ID": "app",
            "MICROSOFT_APP_PASSWORD": "secret-value-2",
            "MICROSOFT_APP_TYPE": "SingleTenant",
        },
        "needs MICROSOFT_APP_TENANT_ID",
    ),
    (
        {
            "MICROSOFT_APP_ID": "app",
            "MICROSOFT_APP_PASSWORD": "secret-value-3",
            "MICROSOFT_APP_TYPE": "Sometimes",
        },
        "MICROSOFT_APP_TYPE must be",
    ),
    (
        {"MICROSOFT_APP_ID": "app", "MICROSOFT_APP_TYPE": "UserAssignedMSI"},
        "UserAssignedMSI is not supported",
    ),
]


@pytest.mark.parametrize(("env", "message"), HALF)
def test_a_half_configured_teams_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(TeamsConfigError, match=message):
        teams_config(_settings(**{k.lower(): v for k, v in env.items()}))


@pytest.mark.parametrize(("env", "message"), HALF[:3])
def test_serve_refuses_a_half_configured_teams_in_one_line(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stderr = serve_refusal(monkeypatch, tmp_path, TEAMS_ENV, env)
    assert message in stderr
    for value in env.values():
        if value.startswith("secret"):
            assert value not in stderr
