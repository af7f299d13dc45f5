"""Which Slack mode the settings ask for: off, one workspace, or many (OAuth); HTTP or Socket Mode.

A half-configured Slack is an error at start, never at the first message."""

from dataclasses import dataclass, field

from adapters.slack.token_crypto import TokenKeyError, check_key
from bot.runtime.settings import Settings

DEFAULT_API_BASE_URL = "https://slack.com/api/"


class SlackConfigError(ValueError):
    """One line that says what is missing or wrong, for `serve` to print before it binds a port."""


@dataclass(frozen=True)
class SlackConfig:
    signing_secret: str | None
    bot_token: str | None  # one workspace
    app_token: str | None  # Socket Mode
    client_id: str | None  # many workspaces (OAuth)
    client_secret: str | None
    api_base_url: str
    public_base_url: str | None
    # Encrypts the tokens of OAuth installations at rest; repr=False keeps it out of tracebacks.
    token_encryption_key: str | None = field(default=None, repr=False)

    @property
    def oauth(self) -> bool:
        return self.client_id is not None

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    def describe(self) -> str:
        workspaces = "multi-workspace OAuth" if self.oauth else "single workspace"
        transport = "Socket Mode" if self.socket_mode else "HTTP at POST /slack/events"
        # Only installations are stored; a single workspace's token lives in the environment.
        at_rest = ", stored tokens encrypted" if self.oauth and self.token_encryption_key else ""
        return f"slack: on ({workspaces}, {transport}{at_rest})"


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def slack_config(settings: Settings) -> SlackConfig | None:
    """The Slack configuration, None when every Slack credential is absent; SlackConfigError if half set."""
    config = SlackConfig(
        signing_secret=_secret(settings.slack_signing_secret),
        bot_token=_secret(settings.slack_bot_token),
        app_token=_secret(settings.slack_app_token),
        client_id=settings.slack_client_id,
        client_secret=_secret(settings.slack_client_secret),
        api_base_url=_with_slash(settings.slack_api_base_url or DEFAULT_API_BASE_URL),
        public_base_url=settings.public_base_url,
        token_encryption_key=_secret(settings.slack_token_encryption_key),
    )
    credentials = (
        config.signing_secret,
        config.bot_token,
        config.app_token,
        config.client_id,
        config.client_secret,
    )
    if all(value is None for value in credentials):
        return None
    check(config)
    return config


def check(config: SlackConfig) -> None:
    if (config.client_id is None) != (config.client_secret is None):
        raise SlackConfigError(
            "slack: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together (multi-workspace OAuth): "
            "one of them is missing"
        )
    if config.bot_token is not None and config.oauth:
        raise SlackConfigError(
            "slack: set SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID/SLACK_CLIENT_SECRET "
            "(multi-workspace OAuth), not both"
        )
    if config.bot_token is None and not config.oauth:
        raise SlackConfigError(
            "slack: SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET "
            "(multi-workspace OAuth) is missing"
        )
    if config.bot_token is not None and not config.bot_token.startswith("xoxb-"):
        raise SlackConfigError("slack: SLACK_BOT_TOKEN must be a bot token (it starts with xoxb-)")
    if config.app_token is not None and not config.app_token.startswith("xapp-"):
        raise SlackConfigError("slack: SLACK_APP_TOKEN must be an app-level token (it starts with xapp-)")
    # Requests over HTTP are only trusted once signed; OAuth's install pages are HTTP even in Socket Mode.
    if config.signing_secret is None and (not config.socket_mode or config.oauth):
        raise SlackConfigError("slack: SLACK_SIGNING_SECRET is missing (Basic Information › App Credentials)")
    if not config.api_base_url.startswith(("http://", "https://")):
        raise SlackConfigError("slack: SLACK_API_BASE_URL must be an http(s) URL")
    if config.token_encryption_key is not None:
        try:
            check_key(config.token_encryption_key)
        except TokenKeyError as error:
            raise SlackConfigError(str(error)) from None


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
