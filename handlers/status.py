"""Coach views across cities: status, quiet cities, the weekly digest."""

from datetime import datetime, timedelta

from bot.calendar.program import program_from
from bot.calendar.sessions import upcoming
from bot.core.i18n import Translator
from bot.core.messages import Reply, ReplyField
from bot.core.request import Request
from handlers.common import CityState, city_state, day_of, session_line, when
from store.models import City
from store.repo import Store

DEFAULT_QUIET_DAYS = 7
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
    program = program_from(store.program_document())
    states = [city_state(store, city, req.now, t.language, program) for city in req.cities]
    # Undelivered reminders and notices are the business of those who run the program, not the team.
    seen = [s.city.id for s in states if s.city.id is not None]
    failures = store.failed_deliveries(seen) if req.speaker.role != "member" else {}
    failed = {city_id: count for city_id, (count, _) in failures.items()}
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
            last_error = failures[s.city.id][1]
            if req.speaker.role == "admin" and last_error:
                # What the platform said (a WhatsApp error code, say) is for whoever can fix it.
                value = _("{count}; the last: {error}").format(count=value, error=last_error[:300])
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
    since = now - timedelta(days=days)
    found = []
    for city in cities:
        last = store.last_update(city.id)  # type: ignore[arg-type]
        if last is None or last.created_at < since:
            found.append((city, last.created_at if last else None))
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
    _ = t.gettext
    week_ago = now - timedelta(days=7)
    items: list[str] = []
    for city in cities:
        assert city.id is not None
        # Counted, not taken from the list: the list stops at the few it shows.
        updated = store.count_updates(city.id, week_ago)
        updates = store.updates([city.id], week_ago, limit=DIGEST_SHOWN)
        blockers = store.blockers([city.id])
        nxt = upcoming(store.sessions_of(city.id), city.zone, now, count=1)
        count = t.ngettext("{count} update this week", "{count} updates this week", updated)
        lines = [f"*{city.name}* — " + count.format(count=t.number(updated))]
        lines += [f"  • #{u.id} {day_of(t, u.created_at, city)}: {u.text}" for u in updates]
        if blockers:
            oldest = _("Open blockers (oldest first): {count}").format(count=t.number(len(blockers)))
            lines.append("  " + oldest)
            lines += [
                "  • "
                + _("#{number} since {date}: {text}").format(
                    number=b.id, date=day_of(t, b.opened_at, city), text=b.text
                )
                for b in blockers[:DIGEST_SHOWN]
            ]
        else:
            lines.append("  " + _("No open blockers"))
        session = session_line(t, nxt[0], city, now) if nxt else _("none scheduled")
        lines.append("  " + _("Next session: {session}").format(session=session))
        items.append("\n".join(lines))
    gone_quiet = quiet_cities(store, cities, now, DEFAULT_QUIET_DAYS)
    if gone_quiet:
        names = ", ".join(c.name for c, _last in gone_quiet)
        items.append(_("Gone quiet (no update in 7 days): {cities}").format(cities=names))
    title = _("Weekly digest")
    return Reply(text=title + "\n" + "\n".join(items), title=title, items=items)
