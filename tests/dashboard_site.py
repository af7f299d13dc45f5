"""What the coaches' page tests share: the bot's app with the page mounted, a coach's link as chat gives
it, and reading the page back (which cities, the Resolve form)."""

import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import col, select
from starlette.applications import Starlette

from bot.runtime.hub import Hub
from bot.runtime.server import build_app
from store import dashboard
from store.models import Blocker, OutboxMessage
from tests.conftest import TestBot
from web.routes import dashboard_routes
from web.signin import WebConfig

BASE = "http://testserver"
LINK = re.compile(r"https?://\S+?/dashboard/signin/\S+")
CITY_ROW = re.compile(r'<tr class="city[^"]*" data-city="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
RESOLVE_FORM = re.compile(r'name="blocker" value="(\d+)"')
SIGNIN_FORM = re.compile(r'<form method="post" action="([^"]*/dashboard/signin/[^"]+)"')


@pytest.fixture
def public_base(monkeypatch: pytest.MonkeyPatch) -> str:
    """Links point at the test server, signed with the key kept in the database."""
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    monkeypatch.delenv("DASHBOARD_SECRET", raising=False)
    return BASE


def link_for(bot: TestBot, who: str, conversation: str | None = None) -> str:
    """`/cda dashboard` as `who` says it in a DM (or in `conversation`): the link in the reply."""
    text = bot.say(who, "/cda dashboard", conversation=conversation)  # type: ignore[arg-type]
    found = LINK.search(text)
    assert found is not None, text
    return found.group(0)


def link_used(bot: TestBot, link: str) -> bool:
    """Whether the sign-in link has been spent."""
    nonce = link.rsplit("/", 1)[1].split(".")[0]
    with bot.store() as store:
        found = dashboard.link_by_nonce(store, nonce)
        assert found is not None
        return found.used_at is not None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def signin_form(page: httpx.Response) -> tuple[str, str]:
    """The confirm page's form: where its button posts, and its bound field."""
    found = SIGNIN_FORM.search(page.text)
    assert found is not None, page.text
    return found.group(1), csrf_of(page.text)


async def sign_in(client: httpx.AsyncClient, link: str) -> httpx.Response:
    """Open a sign-in link as a browser does: the confirm page, then its button (the POST carrying the
    page's `Origin`); or the refusal the link got at once, if it did."""
    page = await client.get(link)
    if page.status_code != 200:
        return page
    action, field = signin_form(page)
    return await client.post(action, data={"csrf": field}, headers={"origin": origin_of(link)})


def dashboard_app(bot: TestBot, config: WebConfig, wake: Callable[[], None] = lambda: None) -> Starlette:
    """The server's own app (`build_app`), with the coaches' page as `serve` mounts it."""
    pages = dashboard_routes(bot.engine, bot.clock, config, wake)
    return build_app(Hub(bot.engine, bot.clock), [], pages=pages)


@dataclass
class Site:
    bot: TestBot
    config: WebConfig = field(default_factory=lambda: WebConfig(BASE))
    woken: list[int] = field(default_factory=list)

    def app(self) -> Starlette:
        return dashboard_app(self.bot, self.config, lambda: self.woken.append(1))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app()), base_url=self.config.base_url)

    @asynccontextmanager
    async def signed_in(self, who: str) -> AsyncIterator[httpx.AsyncClient]:
        """A client that opened `who`'s link and pressed its button."""
        async with self.client() as client:
            response = await sign_in(client, link_for(self.bot, who))
            assert response.status_code == 303, response.text
            yield client


@pytest.fixture
def site(world: TestBot, public_base: str) -> Iterator[Site]:
    yield Site(world)


def cities_on(html: str) -> list[str]:
    """The slugs of the portfolio's rows, in the order shown."""
    return CITY_ROW.findall(html)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "no form with a CSRF token on the page"
    return found.group(1)


def open_blocker_id(bot: TestBot, slug: str) -> int:
    with bot.store() as store:
        city = store.city_by_slug(slug)
        assert city is not None and city.id is not None
        [blocker] = store.blockers([city.id])
        assert blocker.id is not None
        return blocker.id


def blocker_status(bot: TestBot, blocker_id: int) -> str:
    with bot.store() as store:
        blocker = store.session.get(Blocker, blocker_id)
        assert blocker is not None
        return blocker.status


def notices(bot: TestBot, kind: str = "blocker_resolved") -> list[OutboxMessage]:
    with bot.store() as store:
        query = select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(col(OutboxMessage.id))
        rows = list(store.session.exec(query))
        store.session.expunge_all()
        return rows
