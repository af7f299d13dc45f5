# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""Every route of the running server, fed arbitrary bodies, signed and unsigned: never a 5xx, and a
refused request stores nothing. The coaches' page too, signed in and not: hostile paths, queries,
cookies, forms and methods get the status a browser would, never a 5xx, and a refusal changes nothing."""

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import col, func, select

from store.models import Blocker, DashboardLink, DashboardSession, InboxMessage, OutboxMessage
from tests.slack_fixtures import Running, mock, running, slack_settings, slack_world  # noqa: F401
from tests.slack_harness import event_body, signature_headers
from web.routes import MAX_FORM
from web.signin import (
    BROWSER_COOKIE,
    COOKIE,
    Refused,
    Viewer,
    WebConfig,
    confirm_token,
    issue_link,
    redeem,
    sign_out,
    viewer,
)

ROUTES = [
    ("POST", "/slack/events"),
    ("GET", "/slack/events"),
    ("GET", "/healthz"),
    ("POST", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/api/messages"),
    ("POST", "/twilio/whatsapp"),
    ("GET", "/nowhere"),
]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
KEYS = ["type", "event", "channel", "user", "text", "ts", "team_id", "actions", "payload", "command"]


@st.composite
def slack_shaped(draw: st.DrawFn) -> bytes:
    """A real event with some of its fields replaced by arbitrary values."""
    body: dict[str, Any] = event_body(
        {"type": "message", "channel": "C0001", "user": "UMEMBER1", "text": "update: x", "ts": "1.0"},
        draw(st.text(min_size=1, max_size=10)),
    )
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        target = body["event"] if draw(st.booleans()) and isinstance(body.get("event"), dict) else body
        target[key] = draw(json_values)
    return json.dumps(body).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    slack_shaped(),
    st.dictionaries(st.sampled_from(KEYS), st.text(max_size=20), max_size=4).map(
        lambda form: "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "surrogatepass")
    ),
)


def _stored(run: Running) -> tuple[int, int]:
    with run.bot.store() as store:
        inbox = store.session.exec(select(func.count()).select_from(InboxMessage)).one()
        outbox = store.session.exec(select(func.count()).select_from(OutboxMessage)).one()
    return inbox, outbox


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    signed=st.booleans(),
)
def test_no_route_answers_5xx_and_a_refusal_stores_nothing(
    running: Running, route: tuple[str, str], body: bytes, content_type: str, signed: bool
) -> None:
    method, path = route
    headers = {"Content-Type": content_type} if content_type else {}
    if signed:
        headers |= signature_headers(body)
    running.settle()  # what an earlier example stored is handled (its replies written) before counting
    before = _stored(running)
    response = httpx.request(method, f"{running.url}{path}", content=body, headers=headers, timeout=10)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert _stored(running) == before
        if response.headers.get("content-type", "").startswith("application/json"):
            assert "error" in response.json() or "detail" in response.json()


# -- the coaches' page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A route of the coaches' page: its path around one segment a visitor chooses, and its methods."""

    kind: str
    path: str  # `{}`: the segment (a city's slug, a link's token, a static file's name)
    methods: frozenset[str]


GET = frozenset({"GET", "HEAD"})
PAGES = [
    Page("portfolio", "/dashboard", GET),
    Page("signin", "/dashboard/signin/{}", frozenset({"GET", "HEAD", "POST"})),
    Page("signout", "/dashboard/signout", frozenset({"POST"})),
    Page("city", "/dashboard/city/{}", GET),
    Page("csv", "/dashboard/city/{}/export.csv", GET),
    Page("resolve", "/dashboard/city/{}/resolve", frozenset({"POST"})),
    Page("static", "/dashboard/static/{}", GET),
]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"]
COACHED = {"console:coach-a": {"alpha"}, "console:admin": {"alpha", "beta", "gamma"}}
SIGNED_OUT = [None, "ended", "made-up"]  # no cookie, a session that was signed out, a cookie never given
OWN_ORIGIN = "(the server's own origin)"  # stands for it in a drawn visit
NASTY = [
    "\x00",
    "a\x00b",
    "é",
    "İstanbul",
    "日本語",
    "🙂",
    "\u202e",
    "\ufffd",
    "'\"<>&;",
    "%00",
    " ",
    "..",
    ".",
]
# Sent as they are: bytes that are no UTF-8 once the server decodes them.
RAW_SEGMENTS = ["%ff", "%c0%80", "%ed%a0%80", "%2e%2e%2fpyproject.toml"]
QUERY_KEYS = ["country", "pathway", "phase", "quiet", "blockers", "sort", "days", "resolved", "already"]
RAW_QUERIES = ["%ff=%fe", "days=%00", "resolved=1&resolved=%zz", "&&=&", "sort=" + "-" * 5000]


def _hostile(longest: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(max_size=30),
        st.builds(lambda c, n: c * n, st.characters(), st.integers(100, longest)),  # very long
    )


hostile = _hostile(20_000)  # in a form: past the 16 KiB a form may have, too
in_address = _hostile(1_000)  # in an address: within what the client sends (64 KiB, once encoded)


@dataclass(frozen=True)
class Visit:
    """One request to the coaches' page, as drawn."""

    page: Page
    method: str
    segment: str  # as the server decodes it
    path: str
    query: str
    who: str | None  # a key of COACHED (signed in as them) or one of SIGNED_OUT
    made_up: str  # the cookies' values when they are made up
    csrf: str | None  # "good": the form's own token (the session's, or a live link's confirm page's)
    blocker: str  # "alpha", "beta": that city's blocker
    note: str
    body: bytes | None  # instead of the form
    origin: str | None
    fetch_site: str | None
    preview: bool  # a chat app's link preview
    live: bool  # the sign-in page's own link, made for coach A a moment before, and no drawn token


def _mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """Three draws in four from `usual`: enough visits get past the router, the session and the form's
    token to reach what only they reach, and the rest try everything else."""
    return draw(usual if draw(st.integers(0, 3)) else other)


@st.composite
def visits(draw: st.DrawFn) -> Visit:
    page = draw(st.sampled_from(PAGES))
    method = _mostly(draw, st.sampled_from(sorted(page.methods)), st.sampled_from(METHODS))
    known = st.sampled_from(["alpha", "ALPHA", "beta", "gamma", "dashboard.css"])
    chosen = _mostly(draw, known, draw(st.sampled_from([st.sampled_from(NASTY + RAW_SEGMENTS), in_address])))
    # Each segment whole: a `/` in it is another route, and `..` one a client may fold away. Lone
    # surrogates go as the bytes they would be, which are no UTF-8.
    sent = chosen if chosen in RAW_SEGMENTS else _quoted(chosen.replace("/", "") or "x").replace(".", "%2E")
    keys = st.dictionaries(st.sampled_from(QUERY_KEYS), in_address, max_size=3)
    return Visit(
        page=page,
        method=method,
        segment=unquote(sent, errors="replace"),
        path=page.path.format(sent),
        query=draw(keys.map(_urlencoded) | st.sampled_from(RAW_QUERIES)),
        who=_mostly(draw, st.sampled_from(list(COACHED)), st.sampled_from(SIGNED_OUT)),
        made_up=draw(hostile),
        csrf=_mostly(draw, st.just("good"), st.none() | hostile),
        blocker=_mostly(draw, st.sampled_from(["alpha", "beta"]), hostile),
        note=draw(hostile),
        body=_mostly(draw, st.none(), bodies | st.binary(min_size=MAX_FORM + 1)),
        # As the server's own page sends them, or not.
        origin=_mostly(draw, st.just(OWN_ORIGIN), st.sampled_from([None, "null"]) | hostile),
        fetch_site=_mostly(draw, st.sampled_from([None, "same-origin"]), st.just("cross-site") | hostile),
        preview=draw(st.booleans()),
        live=page.kind == "signin" and draw(st.booleans()),
    )


def _quoted(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


def _urlencoded(fields: dict[str, str]) -> str:
    return urlencode(fields, quote_via=lambda value, *_: _quoted(value))


def _header(value: str) -> bytes | None:
    """`value` as a header may carry it (no control characters, which the HTTP server refuses with
    400 before the page is asked); None if nothing is left."""
    raw = re.sub(rb"[\x00-\x08\x0a-\x1f\x7f]", b"", value.encode(errors="surrogatepass")).strip()
    return raw or None


def _config(run: Running) -> WebConfig:
    """The coaches' page's configuration in the running server: its address and signing key."""
    return WebConfig.from_settings(slack_settings(run.mock))


def _signed_in(run: Running, who: str, end: bool = False) -> tuple[str, str]:
    """A browser's session cookie for `who` and its forms' token, as opening their link gives them
    (signed out at once when `end`)."""
    now, config = run.bot.clock.now(), _config(run)
    with run.bot.store() as store:
        token = issue_link(store, who, "en", now, config).rsplit("/", 1)[1]
        opened = redeem(store, token, now, config)
        assert not isinstance(opened, Refused)
        found = viewer(store, opened.token, now, config)
        assert isinstance(found, Viewer)
        if end:
            sign_out(store, found, now)
    return opened.token, found.csrf


def _live_link(run: Running, browser: str) -> tuple[str, str]:
    """A link just given to coach A, and its confirm page's field for the browser holding `browser`."""
    now, config = run.bot.clock.now(), _config(run)
    with run.bot.store() as store:
        token = issue_link(store, "console:coach-a", "en", now, config).rsplit("/", 1)[1]
        return token, confirm_token(store, token, browser, now, config)


def _from_own_page(own: str, origin: bytes | None, fetch_site: bytes | None) -> bool:
    """Whether a browser sending these says the POST came from a page of the server at `own` (README,
    "Signing in")."""
    if fetch_site is not None and fetch_site.lower() != b"same-origin":
        return False
    if origin is not None and origin != b"null":
        return origin == own.encode()
    return fetch_site is not None


def _blockers(run: Running) -> dict[str, int]:
    with run.bot.store() as store:
        return {
            slug: store.blockers([city.id], include_resolved=True)[0].id or 0
            for slug in ("alpha", "beta")
            if (city := store.city_by_slug(slug)) is not None and city.id is not None
        }


def _page_state(run: Running) -> tuple[int, int, int, list[str]]:
    """What a refused request must leave as it was: the outbox, the live sessions, the spent links,
    every blocker."""
    live = (
        select(func.count()).select_from(DashboardSession).where(col(DashboardSession.revoked_at).is_(None))
    )
    spent = select(func.count()).select_from(DashboardLink).where(col(DashboardLink.used_at).is_not(None))
    with run.bot.store() as store:
        outbox = store.session.exec(select(func.count()).select_from(OutboxMessage)).one()
        blockers = list(store.session.exec(select(Blocker.status).order_by(col(Blocker.id))))
        return outbox, store.session.exec(live).one(), store.session.exec(spent).one(), blockers


def _expected(
    run: Running,
    visit: Visit,
    content: bytes,
    form: dict[str, str],
    blockers: dict[str, int],
    headers: dict[str, Any],
) -> int:
    """The status a browser should get, in the order the page checks."""
    page, method = visit.page, visit.method
    if "/" in visit.segment and "{}" in page.path and page.kind != "static" and not visit.live:
        return 404  # `%2f` decoded: a path of no route (the static files answer for all of theirs)
    if method not in page.methods:
        return 405
    if method == "POST" and (len(content) > MAX_FORM or content.count(b"&") >= 20):
        return 413  # read before anything else: more than any form of ours
    if page.kind == "static":
        return 200 if visit.segment == "dashboard.css" else 404
    if page.kind == "signin" and visit.live:
        if method != "POST":
            return 200  # the confirm page, or the preview's; neither spends the link
        own = _from_own_page(_config(run).origin, headers.get("Origin"), headers.get("Sec-Fetch-Site"))
        return 303 if own and visit.body is None and visit.csrf == "good" else 403
    if page.kind == "signin":
        # A drawn token is never a link made here: refused, but for a preview (or HEAD), which spends nothing.
        return 200 if method == "HEAD" or (method == "GET" and visit.preview) else 403
    if visit.who not in COACHED:
        return 403
    coached = visit.segment.lower() in COACHED[visit.who]
    if page.kind == "portfolio":
        return 200
    if page.kind in ("city", "csv"):
        return 200 if coached else 404
    if not (visit.body is None and visit.csrf == "good"):
        return 403
    if page.kind == "signout":
        return 200
    number = form.get("blocker", "").strip()
    return 303 if coached and number == str(blockers.get(visit.segment.lower())) else 404


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(visit=visits())
def test_the_coaches_page_answers_hostile_requests_as_a_browser_would_and_never_5xx(
    running: Running, visit: Visit
) -> None:
    cookies = {BROWSER_COOKIE: _header(visit.made_up)}  # the confirm page's cookie, made up
    token = ""
    if visit.who in COACHED:
        cookie, token = _signed_in(running, visit.who)
        cookies[COOKIE] = cookie.encode()
    elif visit.who == "ended":
        cookies[COOKIE] = _signed_in(running, "console:coach-a", end=True)[0].encode()
    elif visit.who == "made-up":
        cookies[COOKIE] = _header(visit.made_up)
    path = visit.path
    if visit.live:
        link, token = _live_link(running, "the-browser")
        path = visit.page.path.format(link)
        if visit.csrf == "good":  # the confirm page's field, and the cookie it is bound to
            cookies[BROWSER_COOKIE] = b"the-browser"
    blockers = _blockers(running)
    fields = {
        "csrf": token if visit.csrf == "good" else visit.csrf,
        "blocker": str(blockers.get(visit.blocker, visit.blocker)),
        "note": visit.note,
    }
    form = {name: value for name, value in fields.items() if value is not None}
    content = _urlencoded(form).encode() if visit.body is None else visit.body
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot-LinkExpanding 1.0" if visit.preview else "Mozilla/5.0",
        "Cookie": b"; ".join(name.encode() + b"=" + value for name, value in cookies.items() if value),
    }
    origin = _config(running).origin if visit.origin == OWN_ORIGIN else visit.origin
    for name, value in (("Origin", origin), ("Sec-Fetch-Site", visit.fetch_site)):
        if value is not None and (sent := _header(value)) is not None:
            headers[name] = sent
    running.settle()
    before = _page_state(running)
    response = httpx.request(
        visit.method,
        f"{running.url}{path}?{visit.query}",
        content=None if visit.method == "HEAD" else content,
        headers=headers,
        timeout=30,
    )
    expected = _expected(running, visit, content, form, blockers, headers)
    # What was reached, for --hypothesis-show-statistics.
    event(f"{visit.page.kind}{' (live link)' if visit.live else ''} {response.status_code}")
    assert response.status_code == expected, (response.status_code, expected, response.text[:300])
    if response.status_code >= 400:
        assert _page_state(running) == before
