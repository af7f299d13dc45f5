"""Coach views across cities: status, quiet cities, the weekly digest."""

from datetime import datetime, timedelta

from bot.messages import Reply, ReplyField
from bot.request import Request
from bot.sessions import upcoming
from handlers.common import CityState, city_state, day_of, plural, session_line, when
from store.models import City
from store.repo import Store

DEFAULT_QUIET_DAYS = 7


def _last_update(state: CityState, now: datetime) -> str:
    return when(state.last_update, state.city, now) if state.last_update else "none yet"


def _next_session(state: CityState, now: datetime) -> str:
    return session_line(state.next_session, state.city, now) if state.next_session else "none scheduled"


def status(req: Request, store: Store) -> Reply:
    states = [city_state(store, city, req.now) for city in req.cities]
    if len(states) == 1:
        s = states[0]
        fields = [
            ReplyField(label="Phase", value=s.phase),
            ReplyField(label="Last update", value=_last_update(s, req.now)),
            ReplyField(label="Updates in 7 days", value=str(s.updates_7d)),
            ReplyField(label="Open blockers", value=str(s.open_blockers)),
            ReplyField(label="Next session", value=_next_session(s, req.now)),
        ]
        title = f"Status — {s.city.name}"
        text = title + "\n" + "\n".join(f"{f.label}: {f.value}" for f in fields)
        return Reply(text=text, title=title, fields=fields)
    items = [
        f"{s.city.name} — {s.phase} · last update {_last_update(s, req.now)} · "
        f"{plural(s.updates_7d, 'update')} in 7 days · {plural(s.open_blockers, 'open blocker')} · "
        f"next session {_next_session(s, req.now)}"
        for s in states
    ]
    title = f"Status — {plural(len(states), 'city', 'cities')}"
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
    days = req.days_or(DEFAULT_QUIET_DAYS)
    found = quiet_cities(store, req.cities, req.now, days)
    title = f"No update in {days} days"
    if not found:
        return Reply(text=f"Every city you coach has posted an update in the last {days} days.", title=title)
    items = [
        f"{city.name}: last update {when(last, city, req.now) if last else 'never'}" for city, last in found
    ]
    return Reply(text=title + "\n" + "\n".join(items), title=title, items=items)


def digest(req: Request, store: Store) -> Reply:
    week_ago = req.now - timedelta(days=7)
    items: list[str] = []
    for city in req.cities:
        assert city.id is not None
        updates = store.updates([city.id], week_ago)
        blockers = store.blockers([city.id])
        nxt = upcoming(store.sessions_of(city.id), city.zone, req.now, count=1)
        lines = [f"*{city.name}* — {plural(len(updates), 'update')} this week"]
        lines += [f"  • #{u.id} {day_of(u.created_at, city)}: {u.text}" for u in updates[:5]]
        if blockers:
            lines.append(f"  Open blockers (oldest first): {len(blockers)}")
            lines += [f"  • #{b.id} since {day_of(b.opened_at, city)}: {b.text}" for b in blockers[:5]]
        else:
            lines.append("  No open blockers")
        lines.append(f"  Next session: {session_line(nxt[0], city, req.now) if nxt else 'none scheduled'}")
        items.append("\n".join(lines))
    gone_quiet = quiet_cities(store, req.cities, req.now, DEFAULT_QUIET_DAYS)
    if gone_quiet:
        items.append("Gone quiet (no update in 7 days): " + ", ".join(c.name for c, _ in gone_quiet))
    title = "Weekly digest"
    return Reply(text=title + "\n" + "\n".join(items), title=title, items=items)
