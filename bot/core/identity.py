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

# Three countries' mobiles are written two ways, and WhatsApp (so Twilio's `From`) may use the other one
# than the admin typed. Each pair is one line, so one person: stored in one form, the number as the
# country's plan writes a mobile today. Only mobiles are touched; landlines and other countries never.
_WHATSAPP_FORMS = (
    # Mexico: WhatsApp ids keep the `1` that Mexico's 2019 plan dropped after +52; area codes begin 2-9,
    # so +52 1 and ten digits is never a number of its own.
    (re.compile(r"^\+521([2-9][0-9]{9})$"), r"+52\1"),
    # Argentina: a mobile from abroad is +54 9 and the ten-digit national number, the form WhatsApp
    # uses; people leave the 9 out. Ten digits name one line, fixed or mobile (the 9 only says how to
    # dial a mobile), so the two forms are never two people. Area codes begin 1-3: 0800 and the like are
    # left alone. A landline on WhatsApp (rare) is stored with the 9 too; answers go to the form it
    # writes from (the WhatsApp adapter keeps it).
    (re.compile(r"^\+54([1-3][0-9]{9})$"), r"+549\1"),
    # Brazil: mobiles gained a ninth digit, a leading 9, from 2012; accounts older than that keep the
    # eight-digit number as their WhatsApp id. Eight digits starting 6-9 were mobiles (landlines start
    # 2-5, and never gained the 9).
    (re.compile(r"^\+55([1-9][1-9])([6-9][0-9]{7})$"), r"+55\g<1>9\2"),
)


def canonical_whatsapp(number: str) -> str:
    """`+<digits>` in the one form stored for it (see `_WHATSAPP_FORMS`)."""
    for form, canonical in _WHATSAPP_FORMS:
        if form.match(number):
            return form.sub(canonical, number)
    return number


_PUNCTUATION = re.compile(r"[\s().-]")


class IdentityError(ValueError):
    pass


def normalize_identity(text: str) -> str:
    """Check an identity and return it in its stored form (platform lower-case, Slack ids upper-case,
    a WhatsApp number in the one form its country's two forms share)."""
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
    elif platform == "whatsapp":
        # A number copied from a contact card or a spreadsheet: "+52 (55) 1234-5678", "+57 300.111.2233".
        rest = canonical_whatsapp(_PUNCTUATION.sub("", rest))
    value = f"{platform}:{rest}"
    if not _PATTERNS[platform].match(value):
        raise IdentityError(f"'{text}' is not a valid {platform} identity (like {_EXAMPLES[platform]})")
    return value


def platform_of(identity: str) -> str:
    return identity.split(":", 1)[0]
