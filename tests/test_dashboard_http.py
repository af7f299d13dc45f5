# ruff: noqa: F811  (the fixtures are imported from tests.dashboard_site, then requested by name)
"""The coaches' page through an HTTP client against the bot's Starlette app: signing in by the chat link,
links and sessions that end, and a coach never seeing a city they do not coach — not in the portfolio,
not by a guessed URL, not through the CSV or the Resolve form, not after being taken off the roster."""

import asyncio
import html
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select
from starlette.responses import Response
from typer.testing import CliRunner

from bot import admin
from bot.cli import app as cli
from bot.core.i18n import translator
from bot.runtime import logs
from store import dashboard
from store.models import DashboardLink, DashboardSecret, Role
from tests.conftest import TestBot
from tests.dashboard_site import (
    BASE,
    Site,
    blocker_status,
    cities_on,
    csrf_of,
    dashboard_app,
    link_for,
    link_used,
    notices,
    open_blocker_id,
    public_base,  # noqa: F401
    sign_in,
    signin_form,
    site,  # noqa: F401
)
from web import routes
from web.signin import COOKIE, WebConfig

# -- signing in ---------------------------------------------------------------------------------------


async def test_a_coachs_link_signs_in_and_the_portfolio_shows_exactly_their_cities(site: Site) -> None:
    link = link_for(site.bot, "console:coach-ab")
    assert link.startswith(f"{BASE}/dashboard/signin/")
    async with site.client() as client:
        opened = await sign_in(client, link)
        assert opened.status_code == 303 and opened.headers["location"] == "/dashboard"
        cookie = opened.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=lax", "Path=/dashboard", "Max-Age=28800"):
            assert attribute in cookie, cookie
        assert "Secure" not in cookie  # the page is served over plain http here: the cookie must come back
        page = await client.get("/dashboard")
    assert page.status_code == 200
    assert cities_on(page.text) == ["alpha", "beta"]
    assert page.text.count('<svg class="sparkline"') == 2
    assert "Gamma" not in page.text and "GAMMA" not in page.text


async def test_the_cookie_is_secure_when_the_page_is_served_over_https(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://cda.example.org")
    monkeypatch.delenv("DASHBOARD_SECRET", raising=False)
    site = Site(world, WebConfig("https://cda.example.org"))
    link = link_for(world, "console:coach-a")
    assert link.startswith("https://cda.example.org/dashboard/signin/")
    async with site.client() as client:
        page = await client.get(link)
        assert "Secure" in page.headers["set-cookie"]  # the confirm page's cookie too
        opened = await sign_in(client, link)
        assert opened.status_code == 303
        assert "Secure" in opened.headers["set-cookie"]
        assert cities_on((await client.get("/dashboard")).text) == ["alpha"]


async def test_served_under_a_path_every_address_and_the_cookie_keep_it(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As behind a reverse proxy that serves the bot at https://example.org/cda-bot/ and takes the
    # path off before passing a request on: the routes stay /dashboard…, what the browser is given
    # must not.
    base = "https://example.org/cda-bot"
    monkeypatch.setenv("PUBLIC_BASE_URL", base)
    monkeypatch.delenv("DASHBOARD_SECRET", raising=False)
    app = dashboard_app(world, WebConfig(base))

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not scope["path"].startswith("/cda-bot/"):
                await Response("not behind this proxy", status_code=404)(scope, receive, send)
                return
            path = scope["path"].removeprefix("/cda-bot")
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await app(scope, receive, send)

    def addresses(page: str) -> list[str]:
        return re.findall(r'(?:href|action)="(/[^"]*)"', page)

    link = link_for(world, "console:coach-ab")
    assert link.startswith(f"{base}/dashboard/signin/")
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="https://example.org") as client:
        confirm = await client.get(link)
        assert "Path=/cda-bot/dashboard/signin" in confirm.headers["set-cookie"]
        assert addresses(confirm.text) and all(
            a.startswith("/cda-bot/dashboard") for a in addresses(confirm.text)
        )
        opened = await sign_in(client, link)  # with `Origin: https://example.org`, which has no path
        assert opened.status_code == 303 and opened.headers["location"] == "/cda-bot/dashboard"
        assert "Path=/cda-bot/dashboard" in opened.headers["set-cookie"]
        page = await client.get("/cda-bot/dashboard")
        assert page.status_code == 200 and cities_on(page.text) == ["alpha", "beta"]
        assert addresses(page.text) and all(a.startswith("/cda-bot/dashboard") for a in addresses(page.text))
        (stylesheet,) = re.findall(r'rel="stylesheet" href="([^"]+)"', page.text)
        assert (await client.get(stylesheet)).status_code == 200
        city = await client.get("/cda-bot/dashboard/city/alpha")
        assert city.status_code == 200
        assert all(a.startswith("/cda-bot/dashboard") for a in addresses(city.text))
        (form,) = re.findall(r'<form method="post" action="([^"]+/resolve)"', city.text)
        alpha = open_blocker_id(world, "alpha")
        done = await client.post(form, data={"csrf": csrf_of(city.text), "blocker": str(alpha)})
        assert done.status_code == 303
        assert done.headers["location"] == f"/cda-bot/dashboard/city/alpha?resolved={alpha}"
        (signout,) = re.findall(r'<form method="post" action="([^"]+/signout)"', city.text)
        out = await client.post(signout, data={"csrf": csrf_of(city.text)})
        assert out.status_code == 200 and "Path=/cda-bot/dashboard" in out.headers["set-cookie"]
        assert (await client.get("/cda-bot/dashboard")).status_code == 403


@pytest.mark.parametrize(
    ("who", "named"),
    [
        ("console:coach-a", "Coach A · coach of 1 city"),
        ("console:coach-ab", "Coach AB · coach of 2 cities"),
        ("console:coach-all", "Coach All · coach of every city"),
        ("console:admin", "Admin · admin"),
    ],
)
async def test_opening_a_link_signs_no_one_in_and_leaves_it_unspent(site: Site, who: str, named: str) -> None:
    """An <img> or a redirect to a coach's own link in another coach's browser, or a link scanner
    fetching it, must not sign that browser in, nor use the link up."""
    link = link_for(site.bot, who)
    async with site.client() as client:
        for _ in range(2):  # opened twice: still the same page, not "used already"
            page = await client.get(link, headers={"user-agent": "Mozilla/5.0 (a mail scanner)"})
            assert page.status_code == 200
            text = html.unescape(page.text)
            assert named in re.sub(r"<[^>]+>", "", text)
            assert f"Sign in as {named.split(' · ')[0]}" in text
            assert [c.split("=")[0] for c in page.headers.get_list("set-cookie")] == ["cda_signin"]
            assert "SameSite=strict" in page.headers["set-cookie"]
            assert "Path=/dashboard/signin;" in page.headers["set-cookie"]
            assert page.headers["referrer-policy"] == "same-origin"  # so the button's POST has an Origin
            assert signin_form(page)[0] == link.removeprefix(BASE)
        assert (await client.get("/dashboard")).status_code == 403
    assert not link_used(site.bot, link)


async def test_the_confirm_pages_button_signs_in_and_spends_the_link(site: Site) -> None:
    link = link_for(site.bot, "console:coach-ab")
    async with site.client() as client:
        action, field = signin_form(await client.get(link))
        assert not link_used(site.bot, link)
        opened = await client.post(action, data={"csrf": field}, headers={"origin": BASE})
        assert opened.status_code == 303 and opened.headers["location"] == "/dashboard"
        assert "cda_dashboard=" in opened.headers["set-cookie"]
        assert cities_on((await client.get("/dashboard")).text) == ["alpha", "beta"]
    assert link_used(site.bot, link)


async def test_a_browser_that_sends_sec_fetch_site_but_a_null_origin_signs_in(site: Site) -> None:
    """Under a `no-referrer` policy a browser sends `Origin: null` even from the same origin; its own
    `Sec-Fetch-Site` then says where the POST came from."""
    link = link_for(site.bot, "console:coach-a")
    async with site.client() as client:
        action, field = signin_form(await client.get(link))
        headers = {"origin": "null", "sec-fetch-site": "same-origin"}
        assert (await client.post(action, data={"csrf": field}, headers=headers)).status_code == 303


FORGED_POSTS = {
    # Another site's page submitting a form to the link: its Origin, and no SameSite=Strict cookie.
    "another site's origin": ({"origin": "https://evil.example"}, "own"),
    "this host over https, when served over http": ({"origin": "https://testserver"}, "own"),
    "a sibling site (same-site, not same-origin)": ({"origin": BASE, "sec-fetch-site": "same-site"}, "own"),
    "the browser says cross-site": ({"origin": BASE, "sec-fetch-site": "cross-site"}, "own"),
    "an opaque origin and no Sec-Fetch-Site": ({"origin": "null"}, "own"),
    "neither header": ({}, "own"),
    "no form field": ({"origin": BASE}, "none"),
    "the field from the attacker's own visit to the page": ({"origin": BASE}, "attacker's"),
    "the field without the cookie it is bound to": ({"origin": BASE}, "no cookie"),
}


@pytest.mark.parametrize("case", FORGED_POSTS)
async def test_a_post_not_from_the_confirm_page_is_refused_and_spends_nothing(site: Site, case: str) -> None:
    headers, field = FORGED_POSTS[case]
    link = link_for(site.bot, "console:coach-a")
    async with site.client() as victim, site.client() as attacker:
        action, own = signin_form(await victim.get(link))
        _, attackers = signin_form(await attacker.get(link))
        data = {
            "own": {"csrf": own},
            "none": {},
            "attacker's": {"csrf": attackers},
            "no cookie": {"csrf": own},
        }
        if field == "no cookie":
            victim.cookies.clear()
        refused = await victim.post(action, data=data[field], headers=headers)
        assert refused.status_code == 403
        assert "no one was signed in" in html.unescape(refused.text)
        assert "set-cookie" not in refused.headers
        assert (await victim.get("/dashboard")).status_code == 403
    assert not link_used(site.bot, link)
    async with site.client() as client:
        assert (await sign_in(client, link)).status_code == 303  # the link still works from its page


async def test_a_browser_signed_in_as_someone_else_is_told_before_switching(site: Site) -> None:
    async with site.signed_in("console:coach-a") as client:
        own = html.unescape((await client.get(link_for(site.bot, "console:coach-a"))).text)
        assert "This browser is signed in as" not in own  # the same person: nothing to warn of
        link = link_for(site.bot, "console:coach-ab")
        page = await client.get(link)
        assert "This browser is signed in as Coach A. Continue as Coach AB?" in html.unescape(page.text)
        assert cities_on((await client.get("/dashboard")).text) == ["alpha"]  # still Coach A meanwhile
        before = client.cookies.get(COOKIE)
        action, field = signin_form(page)
        assert (await client.post(action, data={"csrf": field}, headers={"origin": BASE})).status_code == 303
        assert cities_on((await client.get("/dashboard")).text) == ["alpha", "beta"]
    # Coach A's session, whose cookie the switch replaced, is ended, not left valid for its hours.
    async with site.client() as stale:
        stale.cookies.set(COOKIE, before)
        assert (await stale.get("/dashboard")).status_code == 403


async def test_a_link_used_in_another_tab_after_its_page_was_shown_is_refused_at_the_button(
    site: Site,
) -> None:
    link = link_for(site.bot, "console:coach-a")
    async with site.client() as first, site.client() as second:
        forms = [signin_form(await first.get(link)), signin_form(await second.get(link))]
        posted = [
            await client.post(action, data={"csrf": field}, headers={"origin": BASE})
            for client, (action, field) in zip((first, second), forms, strict=True)
        ]
    assert [p.status_code for p in posted] == [303, 403]
    assert "used already" in posted[1].text and "set-cookie" not in posted[1].headers


async def test_a_link_works_once(site: Site) -> None:
    link = link_for(site.bot, "console:coach-a")
    async with site.client() as first:
        assert (await sign_in(first, link)).status_code == 303
    async with site.client() as second:
        again = await second.get(link)
        assert again.status_code == 403
        assert "used already" in again.text
        assert "set-cookie" not in again.headers
        assert (await second.get("/dashboard")).status_code == 403


@pytest.mark.parametrize(("minutes", "works"), [(14.9, True), (15, False), (60 * 24, False)])
async def test_a_link_works_for_15_minutes(site: Site, minutes: float, works: bool) -> None:
    link = link_for(site.bot, "console:coach-a")
    site.bot.clock.set(site.bot.clock.now() + timedelta(minutes=minutes))
    async with site.client() as client:
        response = await sign_in(client, link)
    if works:
        assert response.status_code == 303
    else:
        assert response.status_code == 403 and "expired" in response.text


async def test_a_link_that_was_not_signed_here_is_refused(site: Site) -> None:
    link = link_for(site.bot, "console:coach-a")
    nonce, mac = link.rsplit("/", 1)[1].split(".")
    forged = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    other_nonce = nonce[:-1] + ("Z" if not nonce.endswith("Z") else "Y")  # never the nonce itself
    async with site.client() as client:
        for token in (f"{nonce}.{forged}", nonce, "x" * 500, f"{other_nonce}.{mac}"):
            response = await client.get(f"/dashboard/signin/{token}")
            assert response.status_code == 403 and "not valid" in response.text, token
        assert (await sign_in(client, link)).status_code == 303  # the forgeries did not spend it


async def test_a_chat_apps_link_preview_does_not_spend_the_link(site: Site) -> None:
    link = link_for(site.bot, "console:coach-a")
    async with site.client() as client:
        for agent in ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "WhatsApp/2.23.20.0"):
            preview = await client.get(link, headers={"user-agent": agent})
            assert preview.status_code == 200 and "set-cookie" not in preview.headers
        assert (await client.head(link)).status_code == 200
        assert (await sign_in(client, link)).status_code == 303


@pytest.mark.parametrize("language", ["en", "es", "pt"])
async def test_a_link_preview_speaks_the_language_of_the_person_the_link_is_for(
    site: Site, language: str
) -> None:
    """The link knows whose it is, and so their language: a chat app unfurling it, or the browser's
    HEAD, is told to open it in a browser as that person would be, and the link stays unspent."""
    with site.bot.store() as store:
        admin.add_city(store, "delta", "Delta", "America/Sao_Paulo", site.bot.clock.now(), language=language)
        admin.bind(store, "slack:T0001:C0DELTA", "delta", site.bot.clock.now())
    link = link_for(site.bot, "console:coach-all", "slack:T0001:C0DELTA")
    t = translator(language)
    async with site.client() as client:
        for agent in ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "WhatsApp/2.23.20.0"):
            preview = await client.get(link, headers={"user-agent": agent})
            assert preview.status_code == 200 and f'<html lang="{language}">' in preview.text
            assert t.gettext(routes.PREVIEW) in html.unescape(preview.text)
        head = await client.head(link)
        assert head.status_code == 200 and head.headers["content-length"] == preview.headers["content-length"]
        # A token this bot did not sign names no one: its preview is in English.
        forged = await client.get("/dashboard/signin/x.y", headers={"user-agent": "WhatsApp/2.23.20.0"})
        assert forged.status_code == 200 and '<html lang="en">' in forged.text
        assert (await sign_in(client, link)).status_code == 303


async def test_a_link_opened_while_the_database_fails_is_not_written_to_the_log(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link is still unspent after the failure: whoever reads the log could sign in with it."""
    link = link_for(site.bot, "console:coach-a")

    def database_down(*_: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(dashboard, "link_by_nonce", database_down)
    stream = io.StringIO()
    logs.configure(stream=stream)
    try:
        transport = httpx.ASGITransport(app=site.app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            assert (await client.get(link)).status_code == 500
    finally:
        logging.getLogger().handlers.clear()
    # The server's lines, not those of the test's own client (httpx logs every request it makes).
    lines = [
        entry for line in stream.getvalue().splitlines() if (entry := json.loads(line))["logger"] != "httpx"
    ]
    assert [(e["message"], e.get("route")) for e in lines] == [
        ("request failed", "/dashboard/signin/{token}")
    ]
    assert link.rsplit("/", 1)[1].split(".")[1] not in json.dumps(lines)  # the link's signature


async def test_the_key_from_the_environment_signs_and_checks_links(
    world: TestBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    monkeypatch.setenv("DASHBOARD_SECRET", "a-key-from-the-environment")
    link = link_for(world, "console:coach-a")
    async with Site(world, WebConfig(BASE, "another-key")).client() as client:
        assert (await client.get(link)).status_code == 403  # a replica with another key
    async with Site(world, WebConfig(BASE, "a-key-from-the-environment")).client() as client:
        assert (await sign_in(client, link)).status_code == 303
    with world.store() as store:
        assert store.session.exec(select(DashboardSecret)).all() == []  # nothing of it in the database


async def test_without_a_key_in_the_environment_one_is_made_once_and_kept(site: Site) -> None:
    first, second = link_for(site.bot, "console:coach-a"), link_for(site.bot, "console:coach-ab")
    with site.bot.store() as store:
        assert len(store.session.exec(select(DashboardSecret)).all()) == 1
    # Another replica (another app on the same database) checks both.
    for link in (first, second):
        async with site.client() as client:
            assert (await sign_in(client, link)).status_code == 303


async def test_a_session_lasts_8_hours(site: Site) -> None:
    async with site.signed_in("console:coach-a") as client:
        site.bot.clock.set(site.bot.clock.now() + timedelta(hours=8) - timedelta(seconds=1))
        assert (await client.get("/dashboard")).status_code == 200
        site.bot.clock.set(site.bot.clock.now() + timedelta(seconds=1))
        ended = await client.get("/dashboard")
        assert ended.status_code == 403 and "/cda dashboard" in ended.text


async def test_without_a_session_every_page_is_refused(site: Site) -> None:
    async with site.client() as client:
        for path in ("/dashboard", "/dashboard/city/alpha", "/dashboard/city/alpha/export.csv"):
            response = await client.get(path)
            assert response.status_code == 403 and "ALPHA" not in response.text, path
        client.cookies.set("cda_dashboard", "made-up", path="/dashboard")
        assert (await client.get("/dashboard")).status_code == 403


# -- a member asks ------------------------------------------------------------------------------------


def test_a_member_asking_for_the_page_is_refused_and_gets_no_link(world: TestBot) -> None:
    reply = world.say("console:a1", "/cda dashboard")
    assert reply == "`/cda dashboard` is for coaches. Say `/cda help` to see what you can do."
    with world.store() as store:
        assert store.session.exec(select(DashboardLink)).all() == []


def test_a_coach_without_cities_is_told_so(world: TestBot) -> None:
    with world.store() as store:
        admin.add_city(store, "delta", "Delta", "UTC", world.clock.now())
        admin.add_coach(store, "console:coach-d", ["delta"], world.clock.now())
        admin.remove_person(store, "console:coach-d", Role.coach, world.clock.now(), ["delta"])
    assert "You don't coach any city yet" in world.say("console:coach-d", "/cda dashboard")


# -- isolation ----------------------------------------------------------------------------------------


async def test_a_guessed_city_url_of_another_coachs_city_is_not_found(site: Site) -> None:
    async with site.signed_in("console:coach-a") as client:
        own = await client.get("/dashboard/city/alpha")
        assert own.status_code == 200 and "ALPHA-UPDATE-TEXT" in own.text
        other = await client.get("/dashboard/city/beta")
        missing = await client.get("/dashboard/city/atlantis")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text  # a city that exists elsewhere reads as one that does not
    assert "BETA" not in other.text and "Beta" not in other.text


async def test_the_csv_of_another_city_is_not_found_and_ones_own_is_formula_safe(site: Site) -> None:
    site.bot.say("console:a1", 'update: =HYPERLINK("http://evil.example", "click")')
    async with site.signed_in("console:coach-a") as client:
        other = await client.get("/dashboard/city/beta/export.csv")
        own = await client.get("/dashboard/city/alpha/export.csv")
    assert other.status_code == 404 and "BETA" not in other.text
    assert own.status_code == 200 and own.headers["content-type"].startswith("text/csv")
    assert "attachment" in own.headers["content-disposition"]
    lines = own.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "section,kind,number,local_time,time_zone,text,who"
    assert any(line.startswith("open blocker,blocker,") and "ALPHA-BLOCKER-TEXT" in line for line in lines)
    assert any(line.startswith("next session,session,") for line in lines)
    assert any("ALPHA-UPDATE-TEXT" in line for line in lines)
    assert "'=HYPERLINK" in own.text and ",=HYPERLINK" not in own.text and '"=HYPERLINK' not in own.text


async def test_a_coach_taken_off_the_roster_is_refused_at_the_next_request(site: Site) -> None:
    async with site.signed_in("console:coach-ab") as client:
        assert (await client.get("/dashboard")).status_code == 200
        with site.bot.store() as store:
            admin.remove_person(store, "console:coach-ab", Role.coach, site.bot.clock.now())
        for path in ("/dashboard", "/dashboard/city/alpha", "/dashboard/city/alpha/export.csv"):
            response = await client.get(path)
            assert response.status_code == 403 and "ALPHA" not in response.text, path


def _cli(site: Site, *args: str) -> str:
    url = site.bot.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, [*args, "--db", url])
    assert result.exit_code == 0, result.output
    return result.output


async def test_a_coach_removed_and_added_again_is_not_signed_in_by_what_they_had_before(site: Site) -> None:
    """A stolen laptop: the coach is removed, then added again within the session's 8 hours. The old
    cookie, and a link given before the removal, must not sign anyone in as them."""
    async with site.signed_in("console:coach-ab") as stolen, site.signed_in("console:coach-a") as other:
        unopened = link_for(site.bot, "console:coach-ab")
        removed = _cli(site, "coach", "remove", "console:coach-ab")
        assert "1 session on the coaches' page ended" in removed
        _cli(site, "coach", "add", "console:coach-ab", "--city", "alpha", "--city", "beta")
        assert (await stolen.get("/dashboard")).status_code == 403
        assert (await stolen.get("/dashboard/city/alpha")).status_code == 403
        assert (await other.get("/dashboard")).status_code == 200  # someone else's session stays
    async with site.client() as client:
        assert (await sign_in(client, unopened)).status_code == 403
    async with site.signed_in("console:coach-ab") as again:  # a link asked for afresh works
        assert cities_on((await again.get("/dashboard")).text) == ["alpha", "beta"]


async def test_a_coach_taken_off_one_city_stays_signed_in_and_no_longer_sees_it(site: Site) -> None:
    beta = open_blocker_id(site.bot, "beta")
    async with site.signed_in("console:coach-ab") as client:
        page = await client.get("/dashboard/city/beta")
        assert page.status_code == 200
        assert "no longer coaches beta" in _cli(site, "coach", "remove", "console:coach-ab", "--city", "beta")
        assert cities_on((await client.get("/dashboard")).text) == ["alpha"]
        assert (await client.get("/dashboard/city/beta")).status_code == 404
        assert (await client.get("/dashboard/city/beta/export.csv")).status_code == 404
        resolve = await client.post(
            "/dashboard/city/beta/resolve", data={"csrf": csrf_of(page.text), "blocker": str(beta)}
        )
        assert resolve.status_code == 404
    assert blocker_status(site.bot, beta) == "open"


def _link_in_gammas_channel(site: Site) -> str:
    """The coach of all cities asks for their link in Gamma's channel: the page then speaks Spanish."""
    with site.bot.store() as store:
        admin.bind(store, "slack:T0001:C0GAMMA", "gamma", site.bot.clock.now())
    return link_for(site.bot, "console:coach-all", "slack:T0001:C0GAMMA")


async def test_a_blocker_opened_today_reads_so_on_the_city_page_and_portfolio_as_in_chat(site: Site) -> None:
    # Gamma's blocker was opened this morning: the page said "(hace 0 días)", where chat says "(hoy)".
    link = _link_in_gammas_channel(site)
    async with site.client() as client:
        assert (await sign_in(client, link)).status_code == 303
        page = html.unescape((await client.get("/dashboard/city/gamma")).text)
        portfolio = html.unescape((await client.get("/dashboard")).text)
    chat = site.bot.say("console:g1", "/cda blockers")
    assert "abierto el sáb 28 nov 2026 (hoy) por Gil Gamma" in chat
    assert "abierto el sáb 28 nov 2026 (hoy) por Gil Gamma" in page and "hace 0 días" not in page
    # The portfolio's open-blockers column said "el más antiguo: 0 días", as if there were none.
    assert "el más antiguo: menos de un día" in portfolio and "0 días" not in portfolio


async def test_the_csv_keeps_its_accents_in_a_spreadsheet(site: Site) -> None:
    # Excel reads a CSV without a byte-order mark in the machine's legacy code page: "reunión" and
    # "São" showed as "reuniÃ³n" and "SÃ£o" to the coaches of Spanish and Portuguese cities.
    site.bot.say("console:g1", "update: reunión con Movilidad en São Paulo")
    async with site.signed_in("console:coach-all") as client:
        csv = await client.get("/dashboard/city/gamma/export.csv")
    assert csv.status_code == 200 and csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv.content.startswith(b"\xef\xbb\xbf")
    assert "reunión con Movilidad en São Paulo" in csv.content.decode("utf-8-sig")


async def test_an_archived_city_leaves_the_portfolio_but_still_opens_by_name(site: Site) -> None:
    """As `/cda status alpha` still shows it: only the views of all one's cities leave it out."""
    alpha = open_blocker_id(site.bot, "alpha")
    with site.bot.store() as store:
        for slug in ("alpha", "gamma"):
            admin.archive_city(store, slug, site.bot.clock.now())
    async with site.signed_in("console:coach-ab") as client:
        assert cities_on((await client.get("/dashboard")).text) == ["beta"]
        page = await client.get("/dashboard/city/alpha")
        assert page.status_code == 200 and "ALPHA-UPDATE-TEXT" in page.text
        csv = await client.get("/dashboard/city/alpha/export.csv")
        assert csv.status_code == 200 and "ALPHA-BLOCKER-TEXT" in csv.text
        done = await client.post(
            "/dashboard/city/alpha/resolve", data={"csrf": csrf_of(page.text), "blocker": str(alpha)}
        )
        assert done.status_code == 303
        after = await client.get(done.headers["location"])
        assert after.status_code == 200 and f"Blocker #{alpha} resolved." in after.text
        # Archived or not, a city one does not coach is still not found.
        assert (await client.get("/dashboard/city/gamma")).status_code == 404
        assert (await client.get("/dashboard/city/gamma/export.csv")).status_code == 404


def _text(page: httpx.Response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html.unescape(page.text)))


async def test_a_coach_whose_every_city_was_archived_is_told_so_not_that_they_coach_none(site: Site) -> None:
    async with site.signed_in("console:coach-ab") as client:
        with site.bot.store() as store:
            for slug in ("alpha", "beta"):
                admin.archive_city(store, slug, site.bot.clock.now())
        page = html.unescape((await client.get("/dashboard")).text)
        assert cities_on(page) == [] and "You don't coach any city yet" not in page
        assert "Every city you coach has left the program. Name one to see it: <code>/cda status " in page
        # Each still opens by name: the page links to them.
        links = re.findall(r'<a href="(/dashboard/city/[^"]+)">', page)
        assert links == ["/dashboard/city/alpha", "/dashboard/city/beta"]
        assert "ALPHA-UPDATE-TEXT" in (await client.get(links[0])).text


async def test_a_coach_whose_every_city_was_archived_still_gets_a_link_and_signs_in(site: Site) -> None:
    """`/cda dashboard` refused them as `/cda quiet` does, though the page opens an archived city by
    name and tells them why their list is empty."""
    with site.bot.store() as store:
        for slug in ("alpha", "beta"):
            admin.archive_city(store, slug, site.bot.clock.now())
    link = link_for(site.bot, "console:coach-ab")
    async with site.client() as client:
        assert "Coach AB · coach of 0 cities" in _text(await client.get(link))
        assert (await sign_in(client, link)).status_code == 303
        page = _text(await client.get("/dashboard"))
        assert "Showing 0 of your 0 cities." in page and "Every city you coach has left the program" in page
        assert (await client.get("/dashboard/city/beta")).status_code == 200


async def test_the_confirm_page_counts_the_cities_in_the_program_as_the_portfolio_does(site: Site) -> None:
    with site.bot.store() as store:
        admin.archive_city(store, "beta", site.bot.clock.now())
    link = link_for(site.bot, "console:coach-ab")
    async with site.client() as client:
        assert "Coach AB · coach of 1 city" in _text(await client.get(link))
        assert (await sign_in(client, link)).status_code == 303
        assert "Showing 1 of your 1 city." in _text(await client.get("/dashboard"))


async def test_revoke_from_the_command_line_ends_every_session_of_that_person(site: Site) -> None:
    url = site.bot.engine.url.render_as_string(hide_password=False)
    async with (
        site.signed_in("console:coach-a") as first,
        site.signed_in("console:coach-a") as second,
        site.signed_in("console:coach-ab") as other,
    ):
        unopened = link_for(site.bot, "console:coach-a")
        result = CliRunner().invoke(cli, ["dashboard", "revoke", "console:coach-a", "--db", url])
        assert result.exit_code == 0, result.output
        assert "ended 2 sessions of console:coach-a" in result.output
        assert (await first.get("/dashboard")).status_code == 403
        assert (await second.get("/dashboard")).status_code == 403
        assert (await other.get("/dashboard")).status_code == 200  # someone else's stays
        spoiled = await other.get(unopened)  # nor can a link from before be opened
        assert spoiled.status_code == 403 and "not valid" in spoiled.text
        assert "used already" not in spoiled.text  # it never was


async def test_signing_out_ends_the_session(site: Site) -> None:
    async with site.signed_in("console:coach-a") as client:
        page = await client.get("/dashboard")
        assert (await client.post("/dashboard/signout", data={})).status_code == 403  # no token: refused
        out = await client.post("/dashboard/signout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 200
        assert (await client.get("/dashboard")).status_code == 403


# -- resolving from the page --------------------------------------------------------------------------


async def test_resolve_from_the_page_resolves_and_queues_the_same_notice_as_chat(site: Site) -> None:
    alpha, beta = open_blocker_id(site.bot, "alpha"), open_blocker_id(site.bot, "beta")
    async with site.signed_in("console:coach-ab") as client:
        page = await client.get("/dashboard/city/alpha")
        assert f'name="blocker" value="{alpha}"' in page.text
        done = await client.post(
            "/dashboard/city/alpha/resolve",
            data={"csrf": csrf_of(page.text), "blocker": str(alpha), "note": "data arrived"},
        )
        assert (
            done.status_code == 303 and done.headers["location"] == f"/dashboard/city/alpha?resolved={alpha}"
        )
        after = await client.get(done.headers["location"])
    assert f"Blocker #{alpha} resolved." in after.text
    assert f'name="blocker" value="{alpha}"' not in after.text
    assert blocker_status(site.bot, alpha) == "resolved"
    assert site.woken, "the deliverer is told a notice is waiting"
    # The same blocker's chat resolve, for comparison: Beta's, resolved by the same coach in chat.
    assert f"Blocker #{beta} resolved" in site.bot.say(
        "console:coach-ab", f"/cda resolve {beta} data arrived"
    )
    by_blocker: dict[str, list[tuple[str, str]]] = {}
    for row in notices(site.bot):
        blocker = row.key.split(":")[1]
        by_blocker.setdefault(blocker, []).append((row.recipient, row.payload["text"]))
    # Every coach of the city but the one who resolved it: Alpha has coach-a, coach-ab and coach-all.
    assert sorted(r for r, _ in by_blocker[str(alpha)]) == ["console:coach-a", "console:coach-all"]
    assert sorted(r for r, _ in by_blocker[str(beta)]) == ["console:coach-all"]
    web_text, chat_text = by_blocker[str(alpha)][0][1], by_blocker[str(beta)][0][1]
    assert (
        web_text == f"Blocker #{alpha} in Alpha resolved by Coach AB: ALPHA-BLOCKER-TEXT\nNote: data arrived"
    )
    assert chat_text == web_text.replace(str(alpha), str(beta)).replace("Alpha", "Beta").replace(
        "ALPHA", "BETA"
    )


async def test_resolve_of_a_blocker_resolved_meanwhile_says_so_as_chat_does(site: Site) -> None:
    alpha = open_blocker_id(site.bot, "alpha")
    async with site.signed_in("console:coach-ab") as client:
        page = await client.get("/dashboard/city/alpha")  # the page is open; meanwhile, in chat:
        assert f"Blocker #{alpha} resolved" in site.bot.say(
            "console:coach-a", f"/cda resolve {alpha} by mail"
        )
        done = await client.post(
            "/dashboard/city/alpha/resolve",
            data={"csrf": csrf_of(page.text), "blocker": str(alpha), "note": "my own note"},
        )
        assert done.status_code == 303
        after = await client.get(done.headers["location"])
    chat = site.bot.say("console:coach-ab", f"/cda resolve {alpha} my own note")
    assert chat == f"Blocker #{alpha} was already resolved on Sat 28 Nov 2026."
    assert chat in html.unescape(after.text)
    assert (
        f"Blocker #{alpha} resolved." not in after.text
    )  # not this coach's doing, and the note was not kept
    assert len([n for n in notices(site.bot) if n.key.startswith(f"blocker_resolved:{alpha}:")]) == 2


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
async def test_resolve_without_the_csrf_token_is_refused(site: Site, token: str | None) -> None:
    alpha = open_blocker_id(site.bot, "alpha")
    async with site.signed_in("console:coach-a") as client:
        form = {"blocker": str(alpha)} | ({} if token is None else {"csrf": token})
        refused = await client.post("/dashboard/city/alpha/resolve", data=form)
    assert refused.status_code == 403 and "Reload the page" in refused.text
    assert blocker_status(site.bot, alpha) == "open"
    assert notices(site.bot) == []


async def test_a_token_or_link_with_letters_no_token_has_is_refused_not_a_server_error(site: Site) -> None:
    alpha = open_blocker_id(site.bot, "alpha")
    link = link_for(site.bot, "console:coach-a")
    nonce = link.rsplit("/", 1)[1].split(".")[0]
    async with site.signed_in("console:coach-a") as client:
        for path, form in [
            ("/dashboard/city/alpha/resolve", {"csrf": "é", "blocker": str(alpha)}),
            ("/dashboard/signout", {"csrf": "é"}),
            (link.removeprefix(BASE), {"csrf": "é"}),
        ]:
            refused = await client.post(path, data=form, headers={"origin": BASE})
            assert refused.status_code == 403, path
        forged = await client.get(f"/dashboard/signin/{nonce}.é")
        assert forged.status_code == 403 and "not valid" in forged.text
        assert (await client.get("/dashboard")).status_code == 200  # still signed in
    assert blocker_status(site.bot, alpha) == "open" and not link_used(site.bot, link)


async def test_a_nul_byte_in_an_address_or_a_note_is_refused_or_cleaned_not_a_server_error(
    site: Site,
) -> None:
    """PostgreSQL refuses a NUL byte in any text it is given, even to compare: chat text is cleaned of it
    (bot/core/messages.py), and so is what the page is sent."""
    alpha = open_blocker_id(site.bot, "alpha")
    async with site.signed_in("console:coach-a") as client:
        token = csrf_of((await client.get("/dashboard")).text)
        for path in ("/dashboard/city/%00", "/dashboard/city/al%00pha/export.csv"):
            assert (await client.get(path)).status_code == 404, path
        missing = await client.post(
            "/dashboard/city/%00/resolve", data={"csrf": token, "blocker": str(alpha)}
        )
        assert missing.status_code == 404
        for method in ("GET", "POST"):
            link = await client.request(method, "/dashboard/signin/a%00.b", headers={"origin": BASE})
            assert link.status_code == 403 and "not valid" in link.text, method
        done = await client.post(
            "/dashboard/city/alpha/resolve", data={"csrf": token, "blocker": str(alpha), "note": "a\x00b"}
        )
        assert done.status_code == 303
    assert [n.payload["text"].split("Note: ")[1] for n in notices(site.bot)] == ["a\ufffdb"] * 2


async def test_another_sessions_csrf_token_is_refused(site: Site) -> None:
    alpha = open_blocker_id(site.bot, "alpha")
    async with site.signed_in("console:coach-a") as mine, site.signed_in("console:coach-ab") as theirs:
        their_token = csrf_of((await theirs.get("/dashboard")).text)
        refused = await mine.post(
            "/dashboard/city/alpha/resolve", data={"csrf": their_token, "blocker": alpha}
        )
    assert refused.status_code == 403 and blocker_status(site.bot, alpha) == "open"


async def test_resolve_of_another_coachs_city_is_not_found(site: Site) -> None:
    beta = open_blocker_id(site.bot, "beta")
    async with site.signed_in("console:coach-a") as client:
        token = csrf_of((await client.get("/dashboard")).text)
        for path in ("/dashboard/city/beta/resolve", "/dashboard/city/alpha/resolve"):
            response = await client.post(path, data={"csrf": token, "blocker": str(beta)})
            assert response.status_code == 404, path
    assert blocker_status(site.bot, beta) == "open"
    assert notices(site.bot) == []


async def test_an_oversized_form_is_refused_unread(site: Site) -> None:
    link = link_for(site.bot, "console:coach-a")
    async with site.signed_in("console:coach-a") as client:
        for path in ("/dashboard/city/alpha/resolve", link.removeprefix(BASE)):
            response = await client.post(path, content=b"x=" + b"y" * 20_000, headers={"origin": BASE})
            assert response.status_code == 413, path
    assert not link_used(site.bot, link)


async def test_a_form_that_never_finishes_arriving_is_given_up_on(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read before the session is known: anyone could otherwise hold requests open for as long as they
    liked, a byte at a time."""
    monkeypatch.setattr(routes, "FORM_TIMEOUT_SECONDS", 0.2)

    async def trickle() -> AsyncIterator[bytes]:
        yield b"csrf="
        await asyncio.sleep(3600)

    async with site.client() as client:
        for path in ("/dashboard/signout", "/dashboard/city/alpha/resolve", "/dashboard/signin/a.b"):
            response = await asyncio.wait_for(client.post(path, content=trickle()), 5)
            assert response.status_code == 408, path


# -- what the pages say -------------------------------------------------------------------------------


async def test_every_page_says_which_cities_it_shows_and_in_which_time_zone(site: Site) -> None:
    async with site.signed_in("console:coach-ab") as client:
        portfolio = html.unescape((await client.get("/dashboard")).text)
        city = html.unescape((await client.get("/dashboard/city/alpha")).text)
    assert "Showing 2 of your 2 cities." in portfolio
    assert "each city's own time zone" in portfolio and "Sat 28 Nov 2026, 12:00 UTC" in portfolio
    assert "Alpha, Beta" in portfolio  # the list of what is shown
    assert "This page shows Alpha only. Times are in the city's time zone, America/Chicago (CST)." in city


async def test_filters_and_sorting_come_from_the_query_string(site: Site) -> None:
    async with site.signed_in("console:coach-all") as client:

        async def shown(query: str) -> list[str]:
            response = await client.get(f"/dashboard{query}")
            assert response.status_code == 200
            return cities_on(response.text)

        assert await shown("") == ["alpha", "beta", "gamma"]
        assert await shown("?sort=-name") == ["gamma", "beta", "alpha"]
        assert await shown("?country=CO") == ["gamma"]
        assert await shown("?country=co&pathway=capacity") == ["gamma"]
        assert await shown("?pathway=implementation&sort=-country") == ["alpha", "beta"]  # US, GB
        assert await shown("?blockers=yes") == ["alpha", "beta", "gamma"]
        assert await shown("?blockers=no") == []
        assert await shown("?quiet=yes") == []
        assert await shown("?phase=ll2") == ["alpha", "beta"]  # capacity cities follow their own phase
        assert await shown("?sort=nonsense&country=") == ["alpha", "beta", "gamma"]
        filtered = (await client.get("/dashboard?country=GB")).text
    assert "Showing 1 of your 3 cities." in filtered and "No city matches" not in filtered


async def test_names_with_accents_sort_among_the_others_not_after_z(site: Site) -> None:
    with site.bot.store() as store:
        now = site.bot.clock.now()
        admin.add_city(store, "avila", "Ávila", "Europe/Madrid", now, "ES", "implementation", "es")
        admin.add_city(store, "evora", "Évora", "Europe/Lisbon", now, "PT", "capacity", "pt")
        admin.add_city(store, "zaragoza", "Zaragoza", "Europe/Madrid", now, "ES", "implementation", "es")
    async with site.signed_in("console:coach-all") as client:
        ascending = cities_on((await client.get("/dashboard")).text)
        descending = cities_on((await client.get("/dashboard?sort=-name")).text)
        by_country = cities_on((await client.get("/dashboard?country=ES&sort=country")).text)
    assert ascending == ["alpha", "avila", "beta", "evora", "gamma", "zaragoza"]
    assert descending == list(reversed(ascending))
    assert by_country == ["avila", "zaragoza"]  # equals keep the order of names


async def test_cities_gone_quiet_are_flagged_and_filtered(site: Site) -> None:
    site.bot.clock.set(site.bot.clock.now() + timedelta(days=8))
    site.bot.say("console:b1", "update: still moving")
    async with site.signed_in("console:coach-all") as client:
        quiet = (await client.get("/dashboard?quiet=yes")).text
        moving = (await client.get("/dashboard?quiet=no")).text
    assert cities_on(quiet) == ["alpha", "gamma"] and quiet.count('class="badge quiet"') == 2
    assert cities_on(moving) == ["beta"]


async def test_what_people_typed_is_shown_as_text(site: Site) -> None:
    site.bot.say("console:a1", "update: <script>alert('x')</script> & <b>bold</b>")
    async with site.signed_in("console:coach-a") as client:
        page = await client.get("/dashboard/city/alpha")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page.text
    assert "<script" not in page.text


async def test_the_pages_load_nothing_from_elsewhere_and_run_no_script(site: Site) -> None:
    async with site.signed_in("console:coach-a") as client:
        pages = [await client.get("/dashboard"), await client.get("/dashboard/city/alpha")]
        css = await client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and "sparkline" in css.text
    for page in pages:
        assert "<script" not in page.text
        for url in re.findall(r'(?:src|href|action)="([^"]*)"', page.text):
            assert url.startswith(("/", "?")), url
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"


async def test_the_page_speaks_the_language_the_coach_was_answered_in(site: Site) -> None:
    es = translator("es").gettext
    link = _link_in_gammas_channel(site)
    async with site.client() as client:
        confirm = await client.get(link)
        assert (
            '<html lang="es">' in confirm.text
            and es("Sign in as {name}").format(name="Coach All") in confirm.text
        )
        assert (await sign_in(client, link)).status_code == 303
        page = (await client.get("/dashboard")).text
    assert '<html lang="es">' in page
    assert f">{es('Phase')}<" in page and f">{es('Last update')}<" in page
