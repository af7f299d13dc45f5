"""WhatsApp's settings: off without any, on with all, an error at start when half set."""

import pytest

from adapters.whatsapp.config import WhatsAppConfigError, whatsapp_config
from bot.runtime.serve import ConfigError, build_server
from bot.runtime.settings import Settings
from tests.conftest import TestBot
from tests.whatsapp_harness import ACCOUNT_SID, AUTH_TOKEN, SENDER, clean_environment, whatsapp_settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def test_no_twilio_setting_is_whatsapp_off() -> None:
    assert whatsapp_config(Settings(_env_file=None)) is None  # type: ignore[call-arg]


def test_all_settings_are_whatsapp_on_and_the_token_stays_out_of_reprs() -> None:
    config = whatsapp_config(whatsapp_settings("http://127.0.0.1:9/"))
    assert config is not None
    assert config.sender == SENDER and config.account_sid == ACCOUNT_SID
    assert config.api_base_url == "http://127.0.0.1:9"
    assert AUTH_TOKEN not in repr(config) and AUTH_TOKEN not in config.describe()


def test_a_bare_number_is_taken_as_a_whatsapp_sender() -> None:
    config = whatsapp_config(whatsapp_settings(None, twilio_whatsapp_from="+14155238886"))
    assert config is not None and config.sender == "whatsapp:+14155238886"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"twilio_auth_token": None}, "TWILIO_AUTH_TOKEN"),
        ({"twilio_account_sid": None, "twilio_whatsapp_from": None}, "TWILIO_ACCOUNT_SID"),
        ({"twilio_account_sid": "not-a-sid"}, "TWILIO_ACCOUNT_SID"),
        ({"twilio_whatsapp_from": "whatsapp:14155238886"}, "TWILIO_WHATSAPP_FROM"),
        ({"public_base_url": None}, "PUBLIC_BASE_URL"),
        ({"public_base_url": "bot.example.org"}, "PUBLIC_BASE_URL"),
        ({"twilio_api_base_url": "ftp://x"}, "TWILIO_API_BASE_URL"),
        ({"twilio_messages_per_second": 0}, "TWILIO_MESSAGES_PER_SECOND"),
        ({"twilio_content_sids": "klingon:HX" + "0" * 32}, "TWILIO_CONTENT_SIDS"),
    ],
)
def test_half_a_configuration_is_an_error_that_names_what_is_wrong(
    change: dict[str, object], says: str
) -> None:
    with pytest.raises(WhatsAppConfigError, match=says):
        whatsapp_config(whatsapp_settings(None, **change))


def test_serve_says_whatsapp_is_off_or_on_and_refuses_half(testbot: TestBot) -> None:
    off = build_server(Settings(_env_file=None), testbot.engine, testbot.clock, scheduler=False)  # type: ignore[call-arg]
    assert "whatsapp: off (no credentials)" in off.status
    on = build_server(whatsapp_settings(None), testbot.engine, testbot.clock, scheduler=False)
    assert any(line.startswith("whatsapp: on") for line in on.status)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        build_server(whatsapp_settings(None, twilio_auth_token=None), testbot.engine, testbot.clock)


def test_templates_or_a_rate_without_credentials_is_an_error_not_off() -> None:
    with pytest.raises(WhatsAppConfigError, match="TWILIO_CONTENT_SIDS set but"):
        whatsapp_config(Settings(_env_file=None, twilio_content_sids="en:HX" + "0" * 32))  # type: ignore[call-arg]


def test_the_senders_rate_spaces_whatsapp_sends_and_only_them(testbot: TestBot) -> None:
    default = build_server(whatsapp_settings(None), testbot.engine, testbot.clock, scheduler=False)
    assert default.hub.deliverer.limiter.intervals["whatsapp"] == pytest.approx(1 / 80)
    raised = build_server(
        whatsapp_settings(None, twilio_messages_per_second=200),
        testbot.engine,
        testbot.clock,
        scheduler=False,
    )
    limiter = raised.hub.deliverer.limiter
    assert limiter.intervals["whatsapp"] == pytest.approx(1 / 200)
    assert limiter.intervals["slack"] == 1.0  # another platform's spacing is its own
    assert any("at most 200 messages a second" in line for line in raised.status)
