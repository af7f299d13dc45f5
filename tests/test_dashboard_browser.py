"""The coaches' page in a real browser: Playwright driving Debian's chromium against the bot's app served
by uvicorn on 127.0.0.1, signed in with the link `/cda dashboard` gives in chat and the button on the page
it opens. The portfolio of 80 generated cities is saved as screenshots in tests/artifacts/ (on a desktop
and on a phone)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from benchmarks.dashboard import seed_portfolio
from bot import admin
from store.models import BlockerStatus
from tests.conftest import TestBot
from tests.dashboard_site import blocker_status, dashboard_app, link_for, link_used, notices, open_blocker_id
from tests.slack_harness import listening_socket, serving
from web.signin import WebConfig

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does it when it is missing)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Debian's own chromium: Playwright's browser downloads are not reachable from here.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@dataclass
class Served:
    bot: TestBot
    base: str
    browser: Browser

    def link(self, who: str) -> str:
        return link_for(self.bot, who)

    def page(self, width: int = 1280, height: int = 900) -> Page:
        """A fresh browser profile: no cookies from another page."""
        return self.browser.new_context(viewport={"width": width, "height": height}).new_page()

    def signed_in(self, who: str, width: int = 1280, height: int = 900) -> Page:
        """A fresh browser that opened `who`'s link and pressed its button."""
        page = self.page(width, height)
        response = page.goto(self.link(who))
        assert response is not None and response.status == 200
        with page.expect_navigation() as signed_in:
            page.locator("main form button").click()
        assert signed_in.value is not None and signed_in.value.status == 200
        assert page.url == f"{self.base}/dashboard"
        return page


@pytest.fixture
def served(world: TestBot, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.delenv("DASHBOARD_SECRET", raising=False)
    # The page must know its own address before it serves (the sign-in button's POST is checked
    # against it), as `serve` knows it from PUBLIC_BASE_URL.
    sock = listening_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("PUBLIC_BASE_URL", base)  # the links chat gives point at this server
    with serving(dashboard_app(world, WebConfig(base)), sock=sock):
        yield Served(world, base, browser)


def shown_cities(page: Page) -> list[str | None]:
    return [row.get_attribute("data-city") for row in page.locator("tr.city").all()]


def test_a_coachs_link_opens_a_page_of_exactly_their_cities_with_a_sparkline_each(served: Served) -> None:
    page = served.signed_in("console:coach-ab")
    assert page.title().startswith("Your cities")
    assert shown_cities(page) == ["alpha", "beta"]
    for row in page.locator("tr.city").all():
        sparkline = row.locator("svg.sparkline")
        assert sparkline.count() == 1 and sparkline.is_visible()
        assert sparkline.get_attribute("aria-label", timeout=1000).startswith("Updates per week")  # type: ignore[union-attr]
    assert "Gamma" not in page.content()
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session, confirm = cookies["cda_dashboard"], cookies["cda_signin"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/dashboard"
    assert confirm["httpOnly"] and confirm["sameSite"] == "Strict" and confirm["path"] == "/dashboard/signin"
    assert not session["secure"]  # served over http here; over https it is Secure (test_dashboard_http)


def test_the_link_names_whom_it_signs_in_and_its_button_opens_the_portfolio(served: Served) -> None:
    link = served.link("console:coach-ab")
    page = served.page()
    assert page.goto(link).status == 200 and page.url == link  # type: ignore[union-attr]
    assert page.locator("main .person").inner_text() == "Coach AB · coach of 2 cities"
    assert page.goto(f"{served.base}/dashboard").status == 403  # type: ignore[union-attr]  # not yet
    page.goto(link)  # the link is still unspent: the same page again
    with page.expect_request(lambda r: r.method == "POST") as posted:
        page.get_by_role("button", name="Sign in as Coach AB").click()
    page.wait_for_url(f"{served.base}/dashboard")
    # What the real browser sent, which the server checks: this page's origin, not `null`.
    headers = posted.value.all_headers()
    assert headers["origin"] == served.base and headers["sec-fetch-site"] == "same-origin"
    assert shown_cities(page) == ["alpha", "beta"]


def test_another_sites_page_cannot_sign_a_browser_in_as_someone_else(served: Served) -> None:
    """Coach AB's page elsewhere, with an image pointing at AB's own link and a form posting to it with
    the field AB got by opening it: Coach A, signed in, looks at that page and presses its button."""
    link = served.link("console:coach-ab")
    with httpx.Client() as attacker:
        found = re.search(r'name="csrf" value="([^"]+)"', attacker.get(link).text)
    field = found.group(1) if found else ""
    trap = (
        f'<img src="{link}" alt=""><form method="post" action="{link}">'
        f'<input type="hidden" name="csrf" value="{field}"><button>Win a prize</button></form>'
    )

    async def elsewhere(_: Request) -> HTMLResponse:
        return HTMLResponse(trap)

    victim = served.signed_in("console:coach-a")
    # A's browser holds a confirm page's cookie of its own: it is sent to that site's pages alone.
    victim.goto(served.link("console:coach-a"))
    with serving(Starlette(routes=[Route("/", elsewhere)])) as other:
        victim.goto(other.replace("127.0.0.1", "localhost"))  # another site
        with victim.expect_navigation() as posted:
            victim.get_by_role("button", name="Win a prize").click()
    assert posted.value is not None and posted.value.status == 403
    assert "no one was signed in" in victim.locator("main").inner_text()
    victim.goto(f"{served.base}/dashboard")
    assert shown_cities(victim) == ["alpha"]  # still Coach A
    assert not link_used(served.bot, link)  # and AB's link is still AB's to use


def test_the_same_link_opened_a_second_time_is_refused(served: Served) -> None:
    link = served.link("console:coach-ab")
    first = served.page()
    assert first.goto(link).status == 200  # type: ignore[union-attr]
    first.get_by_role("button", name="Sign in as Coach AB").click()
    first.wait_for_url(f"{served.base}/dashboard")
    for page in (served.page(), first):  # another browser, and the same one
        again = page.goto(link)
        assert again is not None and again.status == 403
        assert "used already" in page.locator("main").inner_text()
    assert served.page().goto(f"{served.base}/dashboard").status == 403  # type: ignore[union-attr]


def test_a_link_opened_after_15_minutes_is_refused(served: Served) -> None:
    link = served.link("console:coach-a")
    served.bot.clock.set(served.bot.clock.now() + timedelta(minutes=15))
    page = served.page()
    response = page.goto(link)
    assert response is not None and response.status == 403
    assert "expired" in page.locator("main").inner_text()


def test_a_guessed_url_of_another_coachs_city_is_not_found(served: Served) -> None:
    page = served.signed_in("console:coach-a")
    for slug in ("beta", "gamma"):
        response = page.goto(f"{served.base}/dashboard/city/{slug}")
        assert response is not None and response.status == 404
        assert slug.upper() not in page.content()
    assert page.goto(f"{served.base}/dashboard/city/alpha").status == 200  # type: ignore[union-attr]


def test_resolve_from_the_page(served: Served) -> None:
    alpha = open_blocker_id(served.bot, "alpha")
    page = served.signed_in("console:coach-a")
    page.get_by_role("link", name="Alpha").click()
    page.wait_for_url(f"{served.base}/dashboard/city/alpha")
    blocker = page.locator(f"#blocker-{alpha}")
    assert "ALPHA-BLOCKER-TEXT" in blocker.inner_text()
    blocker.get_by_label("Note (optional)").fill("the export arrived")
    blocker.get_by_role("button", name="Resolve").click()
    page.wait_for_url(f"{served.base}/dashboard/city/alpha?resolved={alpha}")
    assert page.locator(".flash").inner_text() == f"Blocker #{alpha} resolved."
    assert page.locator(f"#blocker-{alpha}").count() == 0
    assert "the export arrived" in page.locator(".timeline").inner_text()
    assert blocker_status(served.bot, alpha) == BlockerStatus.resolved
    told = sorted(
        row.recipient for row in notices(served.bot) if row.key.startswith(f"blocker_resolved:{alpha}:")
    )
    assert told == ["console:coach-ab", "console:coach-all"]  # Alpha's other coaches, as chat tells them


def test_a_resolve_without_its_csrf_token_is_refused(served: Served) -> None:
    alpha = open_blocker_id(served.bot, "alpha")
    page = served.signed_in("console:coach-a")
    page.goto(f"{served.base}/dashboard/city/alpha")
    form = page.locator(f"#blocker-{alpha} form")
    form.locator("input[name=csrf]").evaluate("input => input.remove()")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        form.get_by_role("button", name="Resolve").click()
    assert posted.value.status == 403
    assert "Reload the page" in page.locator("main").inner_text()
    assert blocker_status(served.bot, alpha) == BlockerStatus.open
    assert notices(served.bot) == []


def test_the_portfolio_of_80_cities_on_a_desktop_and_a_phone(served: Served) -> None:
    with served.bot.store() as store:
        seed_portfolio(store, 80, served.bot.clock.now(), coach="console:coach-80", every=False)
    ARTIFACTS.mkdir(exist_ok=True)
    backend = served.bot.engine.dialect.name
    desktop = served.signed_in("console:coach-80")
    assert len(shown_cities(desktop)) == 80
    assert desktop.locator("tr.city svg.sparkline").count() == 80
    assert "Showing 80 of your 80 cities." in desktop.locator("#scope").inner_text()
    wide = ARTIFACTS / f"dashboard-portfolio-80-cities-{backend}.png"
    desktop.screenshot(path=str(wide), full_page=True)
    phone = served.signed_in("console:coach-80", width=390, height=844)
    # Usable on a phone: each city a card, nothing wider than the screen.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    assert phone.locator("tr.city").first.bounding_box()["width"] <= 390  # type: ignore[index]
    narrow = ARTIFACTS / f"dashboard-portfolio-80-cities-phone-{backend}.png"
    phone.screenshot(path=str(narrow))
    for shot in (wide, narrow):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_a_long_link_in_an_update_or_a_blocker_stays_inside_the_screen(served: Served) -> None:
    # People paste links; a word that long has no space to wrap at.
    link = "https://docs.example.org/d/" + "1Abc" * 40
    served.bot.say("console:a1", f"update: the draft is at {link}")
    served.bot.say("console:a1", f"blocker: waiting for access to {link}")
    with served.bot.store() as store:
        now = served.bot.clock.now()
        name = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch"  # a real town's, in one word
        admin.add_city(store, "long", name, "Europe/London", now, "GB")
        admin.add_coach(store, "console:coach-long", ["alpha", "long"], now, "Coach Long")
    for width in (390, 1280):
        page = served.signed_in("console:coach-long", width=width)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "portfolio"
        page.goto(f"{served.base}/dashboard/city/alpha")
        assert link in page.locator(".timeline").inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "city page"
        page.goto(f"{served.base}/dashboard/city/long")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "a long name"
