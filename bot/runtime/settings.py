"""Settings from the environment or `.env`; `.env.example` lists every one."""

from typing import Any

from pydantic import SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./cda-bot.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL

    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_api_base_url: str | None = None
    slack_token_encryption_key: SecretStr | None = None  # Fernet key: bot tokens encrypted at rest

    microsoft_app_id: str | None = None
    microsoft_app_password: SecretStr | None = None
    microsoft_app_type: str | None = None
    microsoft_app_tenant_id: str | None = None
    microsoft_local_development: bool | None = None  # no app id: the Agents Playground or Emulator here
    microsoft_openid_metadata_url: str | None = None  # where the Bot Framework's signing keys are published
    microsoft_authority_url: str | None = None  # the Entra authority the bot's own tokens come from

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_whatsapp_from: str | None = None
    twilio_api_base_url: str | None = None
    twilio_content_sids: str | None = None  # approved templates by language: en:HX…,es:HX…,pt:HX…
    twilio_messages_per_second: float | None = None  # the sender's rate (Twilio: 80 unless raised)

    public_base_url: str | None = None
    dashboard_secret: SecretStr | None = None  # signs the coaches' page links; else one kept in the database
    metrics_enabled: bool | None = None  # GET /metrics; unset means on, false turns it off

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any, info: ValidationInfo) -> Any:
        # `.env.example` copied as is leaves `KEY=`: that means "not set", not an empty secret.
        if isinstance(value, str) and not value.strip():
            return DEFAULT_DATABASE_URL if info.field_name == "database_url" else None
        return value

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment that gives them (a blank value is an absent one): how a
        child process gets exactly the server's settings, whatever the server was given."""
        environment = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            environment[name.upper()] = "" if value is None else str(value)
        return environment
