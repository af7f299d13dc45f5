"""Schedule answers: the next coaching session (and the one after)."""

from bot.messages import Reply
from bot.request import Request
from bot.sessions import upcoming
from handlers.common import session_line
from store.repo import Store


def next_session(req: Request, store: Store) -> Reply:
    lines = []
    for city in req.cities:
        assert city.id is not None
        found = upcoming(store.sessions_of(city.id), city.zone, req.now, count=2)
        prefix = f"{city.name} — " if len(req.cities) > 1 else ""
        if not found:
            lines.append(f"{prefix}No coaching session is scheduled for {city.name} yet.")
            continue
        lines.append(f"{prefix}Next session: {session_line(found[0], city, req.now)}")
        if len(found) > 1 and len(req.cities) == 1:
            lines.append(f"The one after: {session_line(found[1], city, req.now)}")
    return Reply(text="\n".join(lines), items=lines if len(req.cities) > 1 else [])
