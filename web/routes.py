"""The coaches' page on the bot's own Starlette app: `dashboard_routes` gives the routes `build_app` mounts.

Every request finds its session and the person's role and cities in the database again, off the event
loop, and renders on the server: Jinja2 templates (autoescaped), charts as inline SVG, one stylesheet.
A city the viewer does not coach is "not found", whether it exists or not, on every route that names one."""

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from markupsafe import Markup, escape
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.calendar.sessions import Occurrence, session_title
from bot.core.clock import Clock
from bot.core.i18n import N_, Translator, translator, zone_abbreviation
from bot.core.messages import CSV_MARK, clean_text
from bot.core.request import Speaker, SpeakerRole
from bot.runtime.http_input import BodyError, read_body
from handlers.blockers import MAX_ID_DIGITS, resolve_numbered
from handlers.common import day_of, opened_by, session_line
from handlers.export import csv_text
from handlers.help import NO_CITY_COACHED, NO_CITY_IN_PROGRAM
from store import dashboard
from store.models import BlockerStatus, City, Role
from store.repo import Store, open_store
from web import charts, portfolio
from web.portfolio import CityView, Event, Filters, Row
from web.signin import (
    BROWSER_COOKIE,
    COOKIE,
    LINK_LIFETIME,
    MAX_TOKEN,
    REFUSALS,
    SESSION_LIFETIME,
    SIGNIN_PATH,
    Pending,
    Refusal,
    Refused,
    Viewer,
    WebConfig,
    confirm_token,
    csrf_matches,
    from_own_page,
    is_link_preview,
    link_language,
    new_browser_value,
    pending,
    redeem,
    sign_out,
    viewer,
)

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
STATIC = "/dashboard/static"
MAX_FORM = 16 * 1024  # a Resolve form is a few hundred bytes
FORM_TIMEOUT_SECONDS = 10.0  # a browser sends a few hundred bytes at once; a form still coming never will
# Pages show data of cities: never kept by a cache, never framed, no script, nothing loaded from elsewhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

NOT_FOUND = N_("There is no such city among the ones you coach.")
BAD_FORM = N_("This form has expired or did not come from this page. Reload the page and try again.")
PREVIEW = N_("Open this link in your browser to sign in to the coaches' page. It works once.")
SIGNED_OUT = N_("You are signed out. Say `/cda dashboard` to the bot to sign in again.")
SIGN_IN_REFUSED = N_("This link does not sign you in")
NOT_FROM_SIGNIN_PAGE = N_(
    "This sign-in did not come from its own page, so no one was signed in. To sign in, open the link the bot "
    "gave you and press the button there."
)
REFUSAL_TITLES = {Refusal.signed_out: N_("Not signed in"), Refusal.not_allowed: N_("Not for you")}
PATHWAYS = {"implementation": N_("implementation"), "capacity": N_("capacity-building")}
EVENT_LABELS = {
    "update": N_("Update #{number}"),
    "blocker_opened": N_("Blocker #{number} opened"),
    "blocker_resolved": N_("Blocker #{number} resolved"),
}
CSV_COLUMNS = ["section", "kind", "number", "local_time", "time_zone", "text", "who"]


@cache
def templates() -> "Environment":
    # Jinja2 loads with the first page shown: a bot nobody opens the page of never needs it.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["code"] = code
    return environment


def code(text: str) -> Markup:
    """The texts are shared with chat, where `/cda dashboard` in backticks reads as code; so it does
    here, after everything else in the text is escaped."""
    return Markup(re.sub(r"`([^`\n]+)`", r"<code>\1</code>", str(escape(text))))


@lru_cache(maxsize=4096)
def _number(language: str, value: int) -> str:
    # Babel takes ~0.1 ms a number, and a portfolio writes a dozen small counts per city.
    return translator(language).number(value)


@dataclass(frozen=True)
class Formats:
    """How the templates write instants, ages and sessions: in the viewer's language, each city's zone."""

    t: Translator
    now: datetime

    def number(self, value: int) -> str:
        return _number(self.t.language, value)

    def ago(self, instant: datetime, city: City) -> str:
        return self.t.relative(instant, self.now, city.zone)

    def age(self, instant: datetime | None) -> str:
        days = max((self.now - instant).days, 0) if instant else 0
        return self.t.ngettext("{count} day", "{count} days", days).format(count=self.number(days))

    def oldest(self, opened: datetime | None) -> str:
        """How long the oldest open blocker has waited: "0 days" would read as none at all."""
        _ = self.t.gettext
        if opened is None or self.now - opened < timedelta(days=1):
            return _("oldest under a day")
        return _("oldest {age}").format(age=self.age(opened))

    def day(self, instant: datetime, city: City) -> str:
        return day_of(self.t, instant, city)

    def opened(self, instant: datetime, city: City, who: str) -> str:
        return opened_by(self.t, instant, city, self.now, who)

    def time(self, instant: datetime, city: City) -> str:
        return f"{instant.astimezone(portfolio.zone(city.zone)):%H:%M}"

    def session(self, occurrence: Occurrence, city: City) -> str:
        today = self.now.astimezone(portfolio.zone(city.zone)).date()
        return _session_text(self.t.language, occurrence, city.zone, today)

    def pathway(self, pathway: str | None) -> str:
        return self.t.gettext(PATHWAYS[pathway]) if pathway in PATHWAYS else "—"

    def sparkline(self, row: Row) -> Markup:
        counts = ", ".join(self.number(v) for v in row.weekly)
        label = self.t.gettext("Updates per week, last 12 weeks: {counts}").format(counts=counts)
        return charts.sparkline(row.weekly, label)

    def cells(self, row: Row) -> "Cells":
        _ = self.t.gettext
        updates = self.t.ngettext("{count} update in 7 days", "{count} updates in 7 days", row.updates_7d)
        nxt = row.next_session
        return Cells(
            row=row,
            pathway=self.pathway(row.city.pathway),
            sparkline=self.sparkline(row),
            updates=updates.format(count=self.number(row.updates_7d)),
            last_update=self.ago(row.last_update, row.city) if row.last_update else _("none yet"),
            blockers=self.number(row.open_blockers),
            oldest=self.oldest(row.oldest_blocker) if row.open_blockers else "",
            next_session=self.session(nxt, row.city) if nxt else _("none scheduled"),
        )

    def event_label(self, event: Event) -> str:
        if event.kind == "session":
            return session_title(event.text, self.t)
        return self.t.gettext(EVENT_LABELS[event.kind]).format(number=event.number)

    def event_text(self, event: Event) -> str:
        return "" if event.kind == "session" else event.text


@dataclass(frozen=True)
class Cells:
    """A portfolio row as the page writes it, worked out before the template runs (a template calling a
    dozen helpers for each of 1,000 cities spends more time in the calls than in the work)."""

    row: Row
    pathway: str
    sparkline: Markup
    updates: str
    last_update: str
    blockers: str
    oldest: str
    next_session: str


@lru_cache(maxsize=8192)
def _session_text(language: str, occurrence: Occurrence, zone: str, today: date) -> str:
    """`session_line`, remembered for the day: what it says of now ("in 3 days") counts the city's
    calendar days, so any instant of the city's `today` reads the same."""
    noon = datetime.combine(today, time(12), tzinfo=portfolio.zone(zone))
    return session_line(translator(language), occurrence, City(slug="-", name="-", zone=zone), noon)


def _speaker(who: Viewer) -> Speaker:
    return Speaker(who.identity, SpeakerRole(who.role), who.name, None, list(who.city_ids))


def _timeline(view: CityView, formats: Formats) -> list[tuple[str, list[Event]]]:
    zone = portfolio.zone(view.row.city.zone)
    days = groupby(view.timeline, key=lambda e: e.at.astimezone(zone).date())
    return [(formats.t.date(day), list(events)) for day, events in days]


def _choices(rows: list[Row], t: Translator) -> dict[str, list[Any]]:
    return {
        "countries": sorted({r.city.country.upper() for r in rows if r.city.country}),
        "pathways": [
            (k, t.gettext(v)) for k, v in PATHWAYS.items() if any(r.city.pathway == k for r in rows)
        ],
        "phases": sorted({(r.phase_key, r.phase) for r in rows}, key=lambda choice: choice[1]),
    }


def city_csv(view: CityView) -> str:
    """What the city's page shows, section by section, every cell made inert for spreadsheets."""
    city = view.row.city
    zone = portfolio.zone(city.zone)

    def local(instant: datetime) -> str:
        return instant.astimezone(zone).isoformat(timespec="minutes")

    table: list[Iterable[object]] = [CSV_COLUMNS]
    table += [
        ["open blocker", "blocker", b.id, local(b.opened_at), city.zone, b.text, view.names.get(b.author)]
        for b in view.open_blockers
    ]
    table += [
        ["next session", "session", "", local(s.start), city.zone, s.title, ""] for s in view.next_sessions
    ]
    table += [
        ["timeline", e.kind, e.number or "", local(e.at), city.zone, e.text, view.names.get(e.who or "", "")]
        for e in view.timeline
    ]
    return csv_text(table)


class Pages:
    def __init__(self, engine: Engine, clock: Clock, config: WebConfig, wake: Callable[[], None]) -> None:
        self.engine = engine
        self.clock = clock
        self.config = config
        self.wake = wake

    # -- rendering ------------------------------------------------------------------------------------
    def render(
        self,
        template: str,
        t: Translator,
        who: Viewer | None,
        status: int = 200,
        referrer: str = "no-referrer",
        **context: Any,
    ) -> HTMLResponse:
        html = (
            templates()
            .get_template(template)
            .render(
                _=t.gettext,
                ngettext=t.ngettext,
                t=t,
                viewer=who,
                root=self.config.root,
                static=self.config.root + STATIC,
                referrer=referrer,
                **context,
            )
        )
        return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, "Referrer-Policy": referrer})

    def message(
        self, t: Translator, who: Viewer | None, title: str, text: str, status: int, back: bool = False
    ) -> HTMLResponse:
        tone = "refused" if status >= 400 else "info"
        back_to = self.config.home if back else None
        return self.render("message.html", t, who, status, title=title, text=text, tone=tone, back=back_to)

    def refused(self, refusal: Refused) -> HTMLResponse:
        t = translator(refusal.language)
        title = t.gettext(REFUSAL_TITLES.get(refusal.reason, SIGN_IN_REFUSED))
        return self.message(t, None, title, t.gettext(REFUSALS[refusal.reason]), 403)

    def not_found(self, who: Viewer) -> HTMLResponse:
        t = translator(who.language)
        return self.message(t, who, t.gettext("Not found"), t.gettext(NOT_FOUND), 404, back=True)

    # -- sign in and out ------------------------------------------------------------------------------
    async def signin(self, request: Request) -> Response:
        """Opening a link: a page naming whom it signs in, with the button that does; nothing is spent
        (see web/signin.py for why, and how the button's POST is bound to this page)."""
        token = request.path_params["token"]
        if request.method == "HEAD" or is_link_preview(request.headers.get("user-agent")):
            return await asyncio.to_thread(self._preview, token)
        # The browser's value is kept while it lasts, so two links open in two tabs both still work.
        browser = request.cookies.get(BROWSER_COOKIE) or ""
        if not browser or len(browser) > MAX_TOKEN:
            browser = new_browser_value()
        return await asyncio.to_thread(self._confirm_page, token, request.cookies.get(COOKIE), browser)

    def _preview(self, token: str) -> Response:
        """What a chat app's preview (or a HEAD) is shown: to open the link in a browser, in the language
        of the person it is for, whom the preview is shown to."""
        with open_store(self.engine) as store:
            language = link_language(store, token, self.clock.now(), self.config)
        t = translator(language)
        return self.message(t, None, t.gettext("Sign in"), t.gettext(PREVIEW), 200)

    def _confirm_page(self, token: str, session: str | None, browser: str) -> Response:
        now = self.clock.now()
        with open_store(self.engine) as store:
            person = pending(store, token, now, self.config)
            if isinstance(person, Refused):
                return self.refused(person)  # dead links say so at once, with no button to press
            current = viewer(store, session, now, self.config)
            field = confirm_token(store, token, browser, now, self.config)
        t = translator(person.language)
        # A browser signed in as someone else is told so before it switches: pressing the button then
        # replaces that session's cookie in this browser.
        someone_else = (
            current.display if isinstance(current, Viewer) and current.identity != person.identity else None
        )
        response = self.render(
            "signin.html",
            t,
            None,
            # The form's POST then carries this site's `Origin` (under no-referrer it would be `null`),
            # and a Referer with the link only to this same site, which has it already.
            referrer="same-origin",
            title=t.gettext("Sign in"),
            person=person,
            role=_role(t, person),
            current=someone_else,
            action=f"{self.config.root}{SIGNIN_PATH}{token}",
            csrf=field,
        )
        response.set_cookie(
            BROWSER_COOKIE,
            browser,
            max_age=int(LINK_LIFETIME.total_seconds()),  # a form older than any link has no use
            path=self.config.signin_path,
            secure=self.config.secure,
            httponly=True,
            samesite="strict",  # never sent with a request another site's page makes
        )
        return response

    async def confirm(self, request: Request) -> Response:
        """The confirm page's button: only this spends the link and starts the session, and only when
        it comes from that page in the browser it was shown to."""
        form = await _form(request)
        if isinstance(form, Response):
            return form
        headers = request.headers
        own = from_own_page(self.config, headers.get("origin"), headers.get("sec-fetch-site"))
        token, browser = request.path_params["token"], request.cookies.get(BROWSER_COOKIE)
        session = request.cookies.get(COOKIE)
        return await asyncio.to_thread(self._confirm, token, own, browser, form.get("csrf"), session)

    def _confirm(
        self, token: str, own: bool, browser: str | None, given: str | None, session: str | None
    ) -> Response:
        now = self.clock.now()
        with open_store(self.engine) as store:
            person = pending(store, token, now, self.config)
            if isinstance(person, Refused):
                return self.refused(person)
            # No cookie, no field to compare with: the POST came with no page of ours shown before it.
            field = confirm_token(store, token, browser, now, self.config) if browser else None
            if not (own and field is not None and csrf_matches(given, field)):
                t = translator(person.language)
                return self.message(t, None, t.gettext("Refused"), t.gettext(NOT_FROM_SIGNIN_PAGE), 403)
            outcome = redeem(store, token, now, self.config)
            before = viewer(store, session, now, self.config) if not isinstance(outcome, Refused) else None
            if isinstance(before, Viewer):
                # Its cookie is replaced in this browser, the one place that held it: ended, not left
                # valid for the rest of its hours.
                sign_out(store, before, now)
        if isinstance(outcome, Refused):
            return self.refused(outcome)
        response = RedirectResponse(self.config.home, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE,
            outcome.token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=self.config.home,
            secure=self.config.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    async def signout(self, request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        return await asyncio.to_thread(self._signout, request.cookies.get(COOKIE), form)

    def _signout(self, cookie: str | None, form: dict[str, str]) -> Response:
        now = self.clock.now()
        with open_store(self.engine) as store:
            who = viewer(store, cookie, now, self.config)
            if isinstance(who, Refused):
                return self.refused(who)
            t = translator(who.language)
            if not csrf_matches(form.get("csrf"), who.csrf):
                return self.message(t, who, t.gettext("Refused"), t.gettext(BAD_FORM), 403, back=True)
            sign_out(store, who, now)
        response = self.message(t, None, t.gettext("Signed out"), t.gettext(SIGNED_OUT), 200)
        response.delete_cookie(COOKIE, path=self.config.home, secure=self.config.secure, httponly=True)
        return response

    # -- the portfolio --------------------------------------------------------------------------------
    async def portfolio(self, request: Request) -> Response:
        params = dict(request.query_params)
        return await asyncio.to_thread(self._portfolio, request.cookies.get(COOKIE), params)

    def _portfolio(self, cookie: str | None, params: dict[str, str]) -> Response:
        now = self.clock.now()
        with open_store(self.engine) as store:
            who = viewer(store, cookie, now, self.config)
            if isinstance(who, Refused):
                return self.refused(who)
            all_rows = portfolio.rows(store, who.scope, now, who.language)
            # No row, yet cities coached: every one was archived. Said as chat says it, not "you coach no
            # city yet", with a link to each city's page, which still opens by name.
            left = dashboard.cities(store, who.scope, archived=True) if who.city_ids and not all_rows else []
        return self.render_portfolio(who, all_rows, Filters.parse(params), now, left)

    def render_portfolio(
        self, who: Viewer, all_rows: list[Row], filters: Filters, now: datetime, left: list[City]
    ) -> Response:
        t = translator(who.language)
        _ = t.gettext
        empty = _(NO_CITY_IN_PROGRAM).format(city=left[0].slug) if left else _(NO_CITY_COACHED)
        shown = portfolio.chosen(all_rows, filters)
        columns = {
            "name": _("City"),
            "country": _("Country"),
            "pathway": _("Pathway"),
            "phase": _("Phase"),
            "momentum": _("Momentum"),
            "last_update": _("Last update"),
            "blockers": _("Open blockers"),
            "next_session": _("Next session"),
        }
        formats = Formats(t, now)
        return self.render(
            "portfolio.html",
            t,
            who,
            title=_("Your cities"),
            cells=[formats.cells(row) for row in shown],
            all_count=len(all_rows),
            totals=portfolio.totals(shown),
            filters=filters,
            choices=_choices(all_rows, t),
            columns=list(columns.items()),
            label={**columns, "quiet": _("quiet")},
            f=formats,
            now_text=t.instant(now, "UTC"),
            empty=empty,
            left=left,
        )

    # -- a city ---------------------------------------------------------------------------------------
    async def city(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        params = dict(request.query_params)
        return await asyncio.to_thread(self._city, request.cookies.get(COOKIE), slug, params, csv=False)

    async def city_csv(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        params = dict(request.query_params)
        return await asyncio.to_thread(self._city, request.cookies.get(COOKIE), slug, params, csv=True)

    def _city(self, cookie: str | None, slug: str, params: dict[str, str], csv: bool) -> Response:
        now = self.clock.now()
        with open_store(self.engine) as store:
            who = viewer(store, cookie, now, self.config)
            if isinstance(who, Refused):
                return self.refused(who)
            city = _coached_city(store, who, slug)
            if city is None or city.id is None:
                return self.not_found(who)
            days = portfolio.days_param(params.get("days"))
            view = portfolio.city_view(store, city.id, now, who.language, days)
            flash = _flash(store, who, city, params.get("resolved"), params.get("already"))
        if view is None:
            return self.not_found(who)
        if csv:
            filename = f"cda-{city.slug}-{now:%Y%m%d}.csv"
            return Response(
                CSV_MARK + city_csv(view),
                media_type="text/csv; charset=utf-8",
                headers={
                    "Content-Disposition": f'attachment; filename="{filename}"',
                    "Cache-Control": "no-store",
                    "X-Content-Type-Options": "nosniff",
                },
            )
        t = translator(who.language)
        formats = Formats(t, now)
        return self.render(
            "city.html",
            t,
            who,
            title=city.name,
            city=city,
            row=view.row,
            view=view,
            timeline=_timeline(view, formats),
            flash=flash,
            f=formats,
            abbreviation=zone_abbreviation(now.astimezone(portfolio.zone(city.zone))),
        )

    async def resolve(self, request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        slug = request.path_params["slug"]
        response = await asyncio.to_thread(self._resolve, request.cookies.get(COOKIE), slug, form)
        if response.status_code == 303:
            self.wake()  # the coaches' notice is in the outbox: sent now, not at the next pass
        return response

    def _resolve(self, cookie: str | None, slug: str, form: dict[str, str]) -> Response:
        now = self.clock.now()
        with open_store(self.engine) as store:
            who = viewer(store, cookie, now, self.config)
            if isinstance(who, Refused):
                return self.refused(who)
            t = translator(who.language)
            if not csrf_matches(form.get("csrf"), who.csrf):
                return self.message(t, who, t.gettext("Refused"), t.gettext(BAD_FORM), 403, back=True)
            city = _coached_city(store, who, slug)
            number = (form.get("blocker") or "").strip()
            wellformed = number.isascii() and number.isdigit() and len(number) <= MAX_ID_DIGITS
            blocker = store.blocker(int(number)) if wellformed else None
            if city is None or blocker is None or blocker.city_id != city.id:
                return self.not_found(who)
            # Resolved meanwhile (in chat, another tab, another coach): chat says so, and keeps no note;
            # so does the page, rather than claiming this coach resolved it.
            already = blocker.status == BlockerStatus.resolved
            # The chat command's own logic: the same rights, the same notice to the city's coaches.
            resolve_numbered(store, _speaker(who), number, (form.get("note") or "").strip()[:500], now, t)
        outcome = "already" if already else "resolved"
        return RedirectResponse(
            f"{self.config.home}/city/{city.slug}?{outcome}={blocker.id}", status_code=303
        )


def _role(t: Translator, person: Pending) -> str:
    """What the confirm page says the person signing in is."""
    if person.role == Role.admin:
        return t.gettext("admin")
    if person.every_city:
        return t.gettext("coach of every city")
    count = t.ngettext("coach of {count} city", "coach of {count} cities", person.cities)
    return count.format(count=_number(t.language, person.cities))


def _coached_city(store: Store, who: Viewer, slug: str) -> City | None:
    # A NUL byte (`/dashboard/city/%00`) is in no slug, and PostgreSQL refuses to compare it at all.
    city = store.city_by_slug(slug) if len(slug) <= 64 and "\x00" not in slug else None
    return city if city is not None and city.id in who.city_ids else None


def _flash(store: Store, who: Viewer, city: City, resolved: str | None, already: str | None) -> str | None:
    """After a Resolve, the page says what chat would have: resolved, or resolved already before (then
    when); only about a resolved blocker of this city, so a crafted link cannot make the page claim
    anything of another."""
    number = (resolved or already or "").strip()
    if not (number.isascii() and number.isdigit()) or len(number) > MAX_ID_DIGITS:
        return None
    blocker = store.blocker(int(number))
    if blocker is None or blocker.city_id != city.id or blocker.status != BlockerStatus.resolved:
        return None
    t = translator(who.language)
    if not resolved and blocker.resolved_at is not None:
        return t.gettext("Blocker #{number} was already resolved on {date}.").format(
            number=blocker.id, date=day_of(t, blocker.resolved_at, city)
        )
    return t.gettext("Blocker #{number} resolved.").format(number=blocker.id)


async def _form(request: Request) -> dict[str, str] | Response:
    """A urlencoded form's fields (the first value of each), or the answer to a body that is no form of
    ours: 413 too large, 408 not all there in time. Read before anyone is known to be signed in, so
    within a deadline, as the platforms' bodies are: a body trickled byte by byte held its request (and
    connection) for as long as the sender liked."""
    try:
        body = await read_body(request, MAX_FORM, FORM_TIMEOUT_SECONDS)
    except BodyError as error:
        return Response(status_code=error.status, headers={"Connection": "close"})
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:  # more fields than any form of ours has
        return Response(status_code=413)
    # Cleaned as chat text is: a NUL byte in a Resolve note would fail the statement on PostgreSQL.
    return {name: clean_text(values[0]) for name, values in fields.items()}


def dashboard_routes(
    engine: Engine, clock: Clock, config: WebConfig, wake: Callable[[], None] = lambda: None
) -> list[BaseRoute]:
    """The coaches' page; `wake` tells the deliverer a notice was queued."""
    pages = Pages(engine, clock, config, wake)
    return [
        Route("/dashboard", pages.portfolio, methods=["GET"]),
        Route("/dashboard/signin/{token}", pages.signin, methods=["GET", "HEAD"]),
        Route("/dashboard/signin/{token}", pages.confirm, methods=["POST"]),
        Route("/dashboard/signout", pages.signout, methods=["POST"]),
        Route("/dashboard/city/{slug}", pages.city, methods=["GET"]),
        Route("/dashboard/city/{slug}/export.csv", pages.city_csv, methods=["GET"]),
        Route("/dashboard/city/{slug}/resolve", pages.resolve, methods=["POST"]),
        Mount(STATIC, app=StaticFiles(directory=HERE / "static"), name="dashboard-static"),
    ]
