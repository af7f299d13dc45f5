"""Coach views across cities: status, quiet cities, the weekly digest."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from bot.calendar.sessions import upcoming
from bot.core.i18n import Translator
from bot.core.messages import Reply, ReplyField
from bot.core.request import Request
from handlers.common import CityState, Zoned, city_states, day_of, session_line, when
from store import views
from store.models import City
from store.repo import Store
from web.signin import dashboard_url

DEFAULT_QUIET_DAYS = 7
Z = TypeVar("Z", bound=Zoned)
DIGEST_SHOWN = 5  # updates and blockers a digest shows per city; the counts cover them all
_FAILED_HINT = "{count} (cda-bot reminders list)"


def _last_update(t: Translator, state: CityState, now: datetime) -> str:
    return when(t, state.last_update, state.city, now) if state.last_update else t.gettext("none yet")


def _next_session(t: Translator, state: CityState, now: datetime) -> str:
    if state.next_session is None:
        return t.gettext("none scheduled")
    return session_line(t, state.next_session, state.city, now)


def status(req: Request, store: Store) -> Reply:
    _, t = req.t.gettext, req.t
    states = city_states(store, req.cities, req.now, t.language)
    # Undelivered reminders and notices are the business of those who run the program, not the team.
    shown = req.speaker.role != "member"
    failed = {s.city.id: s.failed for s in states if shown and s.failed}
    if len(states) == 1:
        s = states[0]
        fields = [
            ReplyField(label=_("Phase"), value=s.phase),
            ReplyField(label=_("Last update"), value=_last_update(t, s, req.now)),
            ReplyField(label=_("Updates in 7 days"), value=t.number(s.updates_7d)),
            ReplyField(label=_("Open blockers"), value=t.number(s.open_blockers)),
            ReplyField(label=_("Next session"), value=_next_session(t, s, req.now)),
        ]
        if failed.get(s.city.id):
            value = _FAILED_HINT.format(count=t.number(failed[s.city.id]))
            if req.speaker.role == "admin" and s.last_error:
                # What the platform said (a WhatsApp error code, say) is for whoever can fix it.
                value = _("{count}; the last: {error}").format(count=value, error=s.last_error[:300])
            fields.append(ReplyField(label=_("Failed deliveries"), value=value))
        title = _("Status — {city}").format(city=s.city.name)
        text = title + "\n" + "\n".join(f"{f.label}: {f.value}" for f in fields)
        return Reply(text=text, title=title, fields=fields)
    items = [
        " · ".join(
            [
                f"{s.city.name} — {s.phase}",
                _("last update {when}").format(when=_last_update(t, s, req.now)),
                t.ngettext("{count} update in 7 days", "{count} updates in 7 days", s.updates_7d).format(
                    count=t.number(s.updates_7d)
                ),
                t.ngettext("{count} open blocker", "{count} open blockers", s.open_blockers).format(
                    count=t.number(s.open_blockers)
                ),
                _("next session {when}").format(when=_next_session(t, s, req.now)),
                *(
                    [
                        t.ngettext(
                            "{count} failed delivery", "{count} failed deliveries", failed[s.city.id]
                        ).format(count=t.number(failed[s.city.id]))
                    ]
                    if failed.get(s.city.id)
                    else []
                ),
            ]
        )
        for s in states
    ]
    title = t.ngettext("Status — {count} city", "Status — {count} cities", len(states)).format(
        count=t.number(len(states))
    )
    return Reply(text=title + "\n" + "\n".join(items), title=title, items=items)


def quiet_cities(
    store: Store, cities: list[City], now: datetime, days: int
) -> list[tuple[City, datetime | None]]:
    last = views.last_updates(store, [city.id for city in cities if city.id is not None])
    return _gone_quiet(cities, last, now, days)


def _gone_quiet(
    cities: Sequence[Z], last: dict[int, datetime | None], now: datetime, days: int
) -> list[tuple[Z, datetime | None]]:
    since = now - timedelta(days=days)
    found = []
    for city in cities:
        at = last.get(city.id)  # type: ignore[arg-type]
        if at is None or at < since:
            found.append((city, at))
    return found


def quiet(req: Request, store: Store) -> Reply:
    _, t = req.t.gettext, req.t
    days = req.days_or(DEFAULT_QUIET_DAYS)
    found = quiet_cities(store, req.cities, req.now, days)
    title = t.ngettext("No update in {days} day", "No update in {days} days", days).format(
        days=t.number(days)
    )
    if not found:
        every = t.ngettext(
            "Every city you coach has posted an update in the last {days} day.",
            "Every city you coach has posted an update in the last {days} days.",
            days,
        )
        return Reply(text=every.format(days=t.number(days)), title=title)
    items = [
        _("{city}: last update {when}").format(
            city=city.name, when=when(t, last, city, req.now) if last else _("never")
        )
        for city, last in found
    ]
    return Reply(text=title + "\n" + "\n".join(items), title=title, items=items)


def digest(req: Request, store: Store) -> Reply:
    return digest_reply(req.t, store, req.cities, req.now)


def digest_reply(t: Translator, store: Store, cities: list[City], now: datetime) -> Reply:
    """Per city: updates this week, open blockers (oldest first), next session; then cities gone quiet."""
    return digest_of(t, DigestData.read(store, cities, now), cities, now)


@dataclass
class DigestData:
    """What the digest of any of `cities` shows, read in a fixed number of statements."""

    figures: dict[int, views.CityFigures]
    updates: dict[int, list[views.Posted]]
    blockers: dict[int, list[views.Posted]]
    sessions: dict[int, list[views.SessionRow]]
    # Each distinct "next session" line, worked out once: most cities of a program share their
    # series of sessions and their zone.
    next_lines: dict[tuple[object, ...], str] = field(default_factory=dict)

    @classmethod
    def read(cls, store: Store, cities: Sequence[Zoned], now: datetime) -> "DigestData":
        ids = [city.id for city in cities if city.id is not None]
        week_ago = now - timedelta(days=7)
        return cls(
            # Counted, not taken from the lists: the lists stop at the few they show.
            figures=views.city_figures(store, ids, week_ago),
            updates=views.newest_updates(store, ids, week_ago, DIGEST_SHOWN),
            blockers=views.oldest_open_blockers(store, ids, DIGEST_SHOWN),
            sessions=views.sessions_by_city(store, ids),
        )


def digest_section(t: Translator, data: DigestData, city: Zoned, now: datetime) -> str:
    """One city's part of the digest (the same in every coach's digest that names the city)."""
    _ = t.gettext
    assert city.id is not None
    figure = data.figures[city.id]
    updated = figure.updates_since
    count = t.ngettext("{count} update this week", "{count} updates this week", updated)
    lines = [f"*{city.name}* — " + count.format(count=t.number(updated))]
    lines += [f"  • #{u.id} {day_of(t, u.at, city)}: {u.text}" for u in data.updates.get(city.id, [])]
    if figure.open_blockers:
        oldest = _("Open blockers (oldest first): {count}").format(count=t.number(figure.open_blockers))
        lines.append("  " + oldest)
        lines += [
            "  • "
            + _("#{number} since {date}: {text}").format(number=b.id, date=day_of(t, b.at, city), text=b.text)
            for b in data.blockers.get(city.id, [])
        ]
    else:
        lines.append("  " + _("No open blockers"))
    lines.append("  " + _("Next session: {session}").format(session=_next_line(t, data, city, now)))
    return "\n".join(lines)


def _next_line(t: Translator, data: DigestData, city: Zoned, now: datetime) -> str:
    sessions = data.sessions.get(city.id, [])  # type: ignore[arg-type]
    key = (t.language, city.zone, now, views.series_key(sessions))
    line = data.next_lines.get(key)
    if line is None:
        nxt = upcoming(sessions, city.zone, now, count=1)
        line = data.next_lines[key] = (
            session_line(t, nxt[0], city, now) if nxt else t.gettext("none scheduled")
        )
    return line


def digest_of(
    t: Translator,
    data: DigestData,
    cities: Sequence[Z],
    now: datetime,
    section: Callable[[Z], str] | None = None,
) -> Reply:
    _ = t.gettext
    items = [section(city) if section else digest_section(t, data, city, now) for city in cities]
    last = {c.id: data.figures[c.id].last_update for c in cities if c.id in data.figures}
    gone_quiet = _gone_quiet(cities, last, now, DEFAULT_QUIET_DAYS)
    if gone_quiet:
        names = ", ".join(c.name for c, _last in gone_quiet)
        items.append(_("Gone quiet (no update in 7 days): {cities}").format(cities=names))
    page = _("All your cities at a glance: {url} (say `/cda dashboard` for a sign-in link)")
    items.append(page.format(url=dashboard_url()))
    title = _("Weekly digest")
    return Reply(text=title + "\n" + "\n".join(items), title=title, items=items)
