"""Configuration: every setting of the spec is read, and `.env.example` lists each one."""

from pathlib import Path

import pytest

from bot.runtime.settings import DEFAULT_DATABASE_URL, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting() -> None:
    keys = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert keys == {name.upper() for name in Settings.model_fields}


def test_blank_values_mean_not_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    monkeypatch.setenv("DATABASE_URL", " ")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-value")
    settings = Settings()
    assert settings.slack_bot_token is None
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.twilio_auth_token is not None
    assert "secret-value" not in repr(settings)
