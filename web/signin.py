"""Signing in to the coaches' page without a password: the chat platform already proved who the coach
is, so `/cda dashboard` hands them a one-time signed link, and opening it starts a browser session.

Links are single-use (a row marked used in one statement) and signed with a key from DASHBOARD_SECRET,
else one made on first use and kept in the database so that every replica checks with the same key.
A session is a random cookie of which only a hash is stored; every request looks it up again, and the
person's role and cities are read afresh each time, so a coach taken off the roster is refused at once.

Opening the link (GET, HEAD) spends nothing: it shows whom it would sign in, with one button that POSTs
to the same address, and only that POST spends the link and sets the session cookie. Otherwise anyone
could sign someone else's browser in as themselves (an <img> or a redirect to their own link: login
CSRF, and what the victim then did on the page would be recorded as theirs), and every link scanner
that fetched the link would spend it. The POST is taken only from the confirm page itself:
- `Origin` must be the origin of the configured base URL (scheme, host, port; the proxy's path is no
  part of an origin), and `Sec-Fetch-Site`, where the browser sends it, must be `same-origin`; with no
  usable `Origin` (absent, or `null`) the browser's own `Sec-Fetch-Site: same-origin` must say so. The
  confirm page's referrer policy is `same-origin` so that browsers send its real `Origin`, not `null`.
- the form carries HMAC(key, link token, a random value in a `SameSite=Strict` HttpOnly cookie that the
  GET sets, path the sign-in path, for as long as a link lives). Another site's page cannot read that
  cookie, nor make a browser send it with a cross-site POST, so it cannot know or forge the field; its
  own visit to the link gets a field bound to its own cookie, which the victim's browser does not have.
Nothing is stored for it: the key is the links' own, and a browser with two links open in two tabs
keeps one cookie for both."""

import base64
import functools
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from bot.core.i18n import N_
from bot.runtime.settings import Settings
from store import dashboard
from store.models import DashboardLink, DashboardSession, Role
from store.repo import Store

LINK_LIFETIME = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)
COOKIE = "cda_dashboard"
COOKIE_PATH = "/dashboard"
SIGNIN_PATH = "/dashboard/signin/"
# The confirm page's cookie that its form is bound to (see the module's docstring); sent only to the
# sign-in addresses, and only from this site's own pages.
BROWSER_COOKIE = "cda_signin"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
SECRET_NAME = "dashboard-links"
MAX_TOKEN = 200  # far longer than any link made here; longer ones are not looked up
KEPT_AFTER_EXPIRY = timedelta(days=1)  # so a late link is still told "expired", not "not valid"
ALLOWED_ROLES = frozenset({Role.coach, Role.admin})


@dataclass(frozen=True)
class WebConfig:
    """Where links point, and the signing key if the environment gives one."""

    base_url: str = DEFAULT_BASE_URL
    secret: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "WebConfig":
        secret = settings.dashboard_secret.get_secret_value() if settings.dashboard_secret else None
        return cls((settings.public_base_url or DEFAULT_BASE_URL).rstrip("/"), secret)

    @property
    def root(self) -> str:
        """The path the bot is served under, behind a proxy that takes it off before passing requests
        on (`https://example.org/cda-bot` → `/cda-bot`; none → ""): every address a page gives, and its
        cookie's path, begin with it, where the routes themselves do not."""
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def home(self) -> str:
        """The portfolio's path as a browser asks for it (under `root`): where redirects go, and the
        path of the session cookie."""
        return self.root + COOKIE_PATH

    @property
    def origin(self) -> str:
        """What a browser sends as `Origin` from a page of ours: the base URL without its path."""
        return _origin(self.base_url)

    @property
    def signin_path(self) -> str:
        """The sign-in addresses as a browser asks for them (under `root`): the path of the confirm
        page's cookie."""
        return self.root + SIGNIN_PATH.rstrip("/")

    @property
    def secure(self) -> bool:
        """Cookies only over https where the page is served over https; on plain http (the terminal
        demo, a laptop) a Secure cookie would never come back."""
        return self.base_url.lower().startswith("https://")


def _origin(url: str) -> str:
    """`scheme://host[:port]`, lower case, without a default port: how browsers write `Origin`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port that is no number
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def dashboard_url(config: WebConfig | None = None) -> str:
    """The portfolio's address, for texts that point at it (the weekly digest): opening it without a
    session says how to get a sign-in link."""
    if config is not None:
        return f"{config.base_url}{COOKIE_PATH}"
    return f"{_configured_base(os.environ.get('PUBLIC_BASE_URL'))}{COOKIE_PATH}"


@functools.lru_cache(maxsize=4)
def _configured_base(_public_base_url: str | None) -> str:
    """Reading the settings costs milliseconds, and a digest for each of a thousand coaches asks: read
    once per value of PUBLIC_BASE_URL in the environment (which is what changes between tests)."""
    return WebConfig.from_settings(Settings()).base_url


def signing_key(store: Store, config: WebConfig, now: datetime) -> bytes:
    if config.secret:
        return config.secret.encode()
    return dashboard.shared_secret(store, SECRET_NAME, lambda: secrets.token_urlsafe(32), now).encode()


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _link_mac(key: bytes, link: DashboardLink) -> str:
    return _mac(key, "link", link.nonce, link.identity, str(int(link.expires_at.timestamp())))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(store: Store, identity: str, language: str, now: datetime, config: WebConfig) -> str:
    """A new one-time link for `identity`, stored in the caller's transaction."""
    dashboard.forget_expired(store, now - KEPT_AFTER_EXPIRY)
    link = dashboard.add_link(
        store,
        DashboardLink(
            nonce=secrets.token_urlsafe(18),
            identity=identity,
            language=language,
            created_at=now,
            expires_at=now + LINK_LIFETIME,
        ),
    )
    return f"{config.base_url}{SIGNIN_PATH}{link.nonce}.{_link_mac(signing_key(store, config, now), link)}"


class Refusal(StrEnum):
    unknown = "unknown"  # not a link this bot made (or one long forgotten)
    used = "used"
    expired = "expired"
    not_allowed = "not_allowed"  # not (or no longer) a coach or an admin
    signed_out = "signed_out"  # no session, or one that ended


# What the refusal page says, in the viewer's language where it is known.
REFUSALS = {
    Refusal.unknown: N_("This sign-in link is not valid. Say `/cda dashboard` to the bot for a new one."),
    Refusal.used: N_(
        "This sign-in link was used already: each link works once. Say `/cda dashboard` to the bot for a "
        "new one."
    ),
    Refusal.expired: N_(
        "This sign-in link has expired: links work for 15 minutes. Say `/cda dashboard` to the bot for a "
        "new one."
    ),
    Refusal.not_allowed: N_("The coaches' page is for coaches and admins, and you are not one (any more)."),
    Refusal.signed_out: N_(
        "You are not signed in, or your session has ended. Say `/cda dashboard` to the bot for a sign-in "
        "link."
    ),
}


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    language: str = "en"  # the language of the person refused, where the link or session says it


@dataclass(frozen=True)
class Opened:
    token: str  # the cookie's value; only its hash is stored
    session: DashboardSession


def allowed(store: Store, identity: str) -> bool:
    person = store.person(identity)
    return person is not None and person.role in ALLOWED_ROLES


def _live_link(store: Store, token: str, now: datetime, config: WebConfig) -> DashboardLink | Refused:
    """The link `token` names, if this bot signed it and it is neither used nor expired."""
    nonce, dot, mac = token.partition(".")
    # No link has a NUL byte, and PostgreSQL refuses to look one up (an error, not "no such link").
    if not dot or len(token) > MAX_TOKEN or "\x00" in token:
        return Refused(Refusal.unknown)
    link = dashboard.link_by_nonce(store, nonce)
    if link is None or not _same(mac, _link_mac(signing_key(store, config, now), link)):
        return Refused(Refusal.unknown)
    if link.used_at is not None:
        return Refused(Refusal.used, link.language)
    if now >= link.expires_at:
        return Refused(Refusal.expired, link.language)
    return link


def link_language(store: Store, token: str, now: datetime, config: WebConfig) -> str:
    """The language of the person a link was made for, whether or not it still works (English for a
    link not made here): what a preview of it is shown in. Spends nothing."""
    return _live_link(store, token, now, config).language


@dataclass(frozen=True)
class Pending:
    """A live link not opened yet, and whom it would sign in: what the confirm page names."""

    identity: str
    name: str | None
    role: str
    language: str
    every_city: bool
    cities: int  # those in the program, when not every city

    @property
    def display(self) -> str:
        return self.name or self.identity


def pending(store: Store, token: str, now: datetime, config: WebConfig) -> Pending | Refused:
    """What opening the link shows, spending nothing; a dead link is refused here already, so nobody
    presses a button to learn that."""
    link = _live_link(store, token, now, config)
    if isinstance(link, Refused):
        return link
    person = store.person(link.identity)
    if person is None or person.role not in ALLOWED_ROLES:
        return Refused(Refusal.not_allowed, link.language)
    every_city, city_ids = dashboard.coached(store, person)
    # Counted as the portfolio counts "your cities": an archived city has left the program.
    cities = 0 if every_city else len(dashboard.cities(store, city_ids))
    return Pending(person.identity, person.name, person.role, link.language, every_city, cities)


def redeem(store: Store, token: str, now: datetime, config: WebConfig) -> Opened | Refused:
    """Spend a link and start a session, or say why not."""
    link = _live_link(store, token, now, config)
    if isinstance(link, Refused):
        return link
    assert link.id is not None
    if not dashboard.use_link(store, link.id, now):
        return Refused(Refusal.used, link.language)  # another browser opened it a moment ago
    if not allowed(store, link.identity):
        return Refused(Refusal.not_allowed, link.language)
    cookie = secrets.token_urlsafe(32)
    session = dashboard.add_session(
        store,
        DashboardSession(
            token_hash=token_hash(cookie),
            identity=link.identity,
            language=link.language,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        ),
    )
    return Opened(cookie, session)


def new_browser_value() -> str:
    return secrets.token_urlsafe(32)


def confirm_token(store: Store, token: str, browser: str, now: datetime, config: WebConfig) -> str:
    """The confirm form's field: only a page shown to the browser holding `browser` (the confirm page's
    cookie) can have it, and only for this link."""
    return _mac(signing_key(store, config, now), "signin", token, browser)


def from_own_page(config: WebConfig, origin: str | None, fetch_site: str | None) -> bool:
    """Whether the browser says a POST came from a page of this site (see the module's docstring).
    Neither header can be set by a page's script; a request not from a browser proves nothing either
    way, and needs the cookie-bound field besides."""
    if fetch_site is not None and fetch_site.strip().lower() != "same-origin":
        return False
    if origin and origin.strip() != "null":
        return bool(config.origin) and _origin(origin) == config.origin
    return fetch_site is not None


@dataclass(frozen=True)
class Viewer:
    """Who is looking, as the database says right now."""

    identity: str
    name: str | None
    role: str
    language: str
    city_ids: list[int] = field(default_factory=list)
    every_city: bool = False  # a coach of all cities, or an admin
    csrf: str = ""
    session_id: int | None = None

    @property
    def display(self) -> str:
        return self.name or self.identity

    @property
    def scope(self) -> list[int] | None:
        """The cities to read: None for every city, which reads faster than a list of them all."""
        return None if self.every_city else self.city_ids


def viewer(store: Store, cookie: str | None, now: datetime, config: WebConfig) -> Viewer | Refused:
    if not cookie or len(cookie) > MAX_TOKEN:
        return Refused(Refusal.signed_out)
    session = dashboard.live_session(store, token_hash(cookie), now)
    if session is None:
        return Refused(Refusal.signed_out)
    person = store.person(session.identity)
    if person is None or person.role not in ALLOWED_ROLES:
        return Refused(Refusal.not_allowed, session.language)
    every_city, city_ids = dashboard.coached(store, person)
    return Viewer(
        identity=person.identity,
        name=person.name,
        role=person.role,
        language=session.language,
        city_ids=city_ids,
        every_city=every_city,
        csrf=_mac(signing_key(store, config, now), "csrf", cookie),
        session_id=session.id,
    )


def csrf_matches(given: str | None, expected: str) -> bool:
    return bool(given) and _same(str(given), expected)


def _same(given: str, expected: str) -> bool:
    """`hmac.compare_digest` on the UTF-8 bytes: given str, it raises on any non-ASCII character, and a
    form field or link anyone can type would answer 500 rather than be refused."""
    return hmac.compare_digest(given.encode(), expected.encode())


def sign_out(store: Store, who: Viewer, now: datetime) -> None:
    if who.session_id is not None:
        dashboard.end_session(store, who.session_id, now)


def revoke(store: Store, identity: str, now: datetime) -> int:
    """End every session of `identity` (and spend the links it has not opened yet)."""
    return dashboard.revoke(store, identity, now)


# Chat apps fetch a link to show a preview before anyone clicks it; opening the link for them would
# spend it. They get a page saying to open it in a browser, and the link stays unused.
PREVIEW_AGENTS = (
    "slackbot",
    "slack-imgproxy",
    "skypeuripreview",
    "microsoftpreview",
    "whatsapp",
    "facebookexternalhit",
    "twitterbot",
    "telegrambot",
    "discordbot",
)


def is_link_preview(user_agent: str | None) -> bool:
    agent = (user_agent or "").lower()
    return any(name in agent for name in PREVIEW_AGENTS)
