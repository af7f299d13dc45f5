"""Which Teams mode the settings ask for: off, a registered bot (every request's token checked), or
local development without an app id (the Agents Playground or the Emulator on this machine, asked for
with MICROSOFT_LOCAL_DEVELOPMENT).

A half-configured Teams is an error at start, never at the first message."""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.runtime.settings import Settings

# Where the Bot Framework publishes the keys that sign its requests to bots (Azure public cloud).
DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
ENTRA = "https://login.microsoftonline.com"
# A multi-tenant bot gets its own tokens from the Bot Framework's tenant; a single-tenant one from its own.
MULTI_TENANT_AUTHORITY = f"{ENTRA}/botframework.com"
BOT_SCOPE = "https://api.botframework.com/.default"
APP_TYPES = {
    "multitenant": "MultiTenant",
    "singletenant": "SingleTenant",
    "userassignedmsi": "UserAssignedMSI",
}
ROUTE = "/api/messages"


class TeamsConfigError(ValueError):
    """One line that says what is missing or wrong, for `serve` to print before it binds a port."""


@dataclass(frozen=True)
class TeamsConfig:
    app_id: str | None  # None: local development, loopback only
    app_type: str = "MultiTenant"
    tenant_id: str | None = None
    openid_metadata_url: str = DEFAULT_OPENID_METADATA_URL
    authority_url: str = MULTI_TENANT_AUTHORITY
    # repr=False keeps the secret out of tracebacks and logs.
    app_password: str | None = field(default=None, repr=False)

    @property
    def local(self) -> bool:
        return self.app_id is None

    def describe(self) -> str:
        if self.local:
            return (
                f"teams: local only (no MICROSOFT_APP_ID: the Agents Playground or Emulator on this "
                f"machine, loopback serviceUrls only, at POST {ROUTE})"
            )
        return f"teams: on ({self.app_type} app {self.app_id}, tokens verified at POST {ROUTE})"


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def _setting(settings: Settings, name: str) -> Any:
    # Read by name: these two are overrides for tests and other clouds (see .env.example).
    value = getattr(settings, name, None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _flag(settings: Settings, name: str) -> bool:
    value = getattr(settings, name, None)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def teams_config(settings: Settings) -> TeamsConfig | None:
    """The Teams configuration: None when no Teams setting is there (Teams is off), local-only with
    MICROSOFT_LOCAL_DEVELOPMENT and no app id. TeamsConfigError if half set."""
    app_id = settings.microsoft_app_id
    password = _secret(settings.microsoft_app_password)
    tenant = settings.microsoft_app_tenant_id
    raw_type = settings.microsoft_app_type
    local = _flag(settings, "microsoft_local_development")
    metadata = _setting(settings, "microsoft_openid_metadata_url") or DEFAULT_OPENID_METADATA_URL
    authority = _setting(settings, "microsoft_authority_url")
    if app_id is not None and local:
        # Never a way to skip the token check of a registered bot.
        raise TeamsConfigError(
            "teams: MICROSOFT_LOCAL_DEVELOPMENT is for running without MICROSOFT_APP_ID: unset one of them"
        )
    if app_id is None:
        if password is not None or tenant is not None or raw_type is not None:
            raise TeamsConfigError(
                "teams: MICROSOFT_APP_ID is missing (Azure Bot › Configuration › Microsoft App ID); "
                "the other MICROSOFT_* settings need it"
            )
        return TeamsConfig(app_id=None, openid_metadata_url=metadata) if local else None
    app_type = APP_TYPES.get((raw_type or ("SingleTenant" if tenant else "MultiTenant")).lower())
    if app_type is None:
        raise TeamsConfigError(
            f"teams: MICROSOFT_APP_TYPE must be MultiTenant or SingleTenant, not {raw_type!r}"
        )
    if app_type == "UserAssignedMSI":
        raise TeamsConfigError(
            "teams: MICROSOFT_APP_TYPE=UserAssignedMSI is not supported yet: register the bot as "
            "SingleTenant or MultiTenant with a client secret"
        )
    if password is None:
        raise TeamsConfigError(
            "teams: MICROSOFT_APP_PASSWORD is missing (the app registration's client secret, "
            "Certificates & secrets)"
        )
    if app_type == "SingleTenant" and tenant is None:
        raise TeamsConfigError("teams: a SingleTenant app needs MICROSOFT_APP_TENANT_ID (the directory id)")
    if authority is None:
        authority = f"{ENTRA}/{tenant}" if app_type == "SingleTenant" else MULTI_TENANT_AUTHORITY
    for name, url in (("MICROSOFT_OPENID_METADATA_URL", metadata), ("MICROSOFT_AUTHORITY_URL", authority)):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TeamsConfigError(f"teams: {name} must be an http(s) URL")
    if not authority.startswith("https://"):
        # MSAL talks to an authority over https only.
        raise TeamsConfigError("teams: MICROSOFT_AUTHORITY_URL must be an https URL")
    return TeamsConfig(
        app_id=app_id,
        app_type=app_type,
        tenant_id=tenant,
        openid_metadata_url=metadata,
        authority_url=authority.rstrip("/"),
        app_password=password,
    )
