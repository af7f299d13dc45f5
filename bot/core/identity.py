"""Identities: `<platform>:<id>` for people and conversations everywhere (CLI, store, logs)."""

import re

PLATFORMS = ("slack", "teams", "whatsapp", "console")

_PATTERNS = {
    "slack": re.compile(r"^slack:[A-Z0-9]{2,20}:[A-Z0-9]{2,30}$"),
    "teams": re.compile(r"^teams:[A-Za-z0-9-]{1,64}:[^\s]{1,150}$"),
    "whatsapp": re.compile(r"^whatsapp:\+[1-9][0-9]{6,14}$"),
    "console": re.compile(r"^console:[a-z0-9][a-z0-9._-]{0,62}$"),
}

_EXAMPLES = {
    "slack": "slack:T0001:U0001",
    "teams": "teams:<tenant id>:<aad object id or conversation id>",
    "whatsapp": "whatsapp:+573001112233",
    "console": "console:ana",
}


_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


class IdentityError(ValueError):
    pass


def normalize_identity(text: str) -> str:
    """Check an identity and return it in its stored form (platform lower-case, Slack ids upper-case)."""
    value = text.strip()
    platform, sep, rest = value.partition(":")
    platform = platform.lower()
    if not sep or platform not in PLATFORMS:
        raise IdentityError(
            f"'{text}' is not an identity: use <platform>:<id> with platform one of {', '.join(PLATFORMS)}"
        )
    if platform == "slack":
        rest = rest.upper()
    elif platform == "console":
        rest = rest.lower()
    elif platform == "teams":
        # Teams sends its GUIDs (tenant, AAD object ids) in lower case; an admin may paste them in upper
        # case. Conversation ids are left alone: some are case-sensitive.
        tenant, colon, local = rest.partition(":")
        rest = tenant.lower() + colon + (local.lower() if _GUID.match(local) else local)
    value = f"{platform}:{rest}"
    if not _PATTERNS[platform].match(value):
        raise IdentityError(f"'{text}' is not a valid {platform} identity (like {_EXAMPLES[platform]})")
    return value


def platform_of(identity: str) -> str:
    return identity.split(":", 1)[0]
