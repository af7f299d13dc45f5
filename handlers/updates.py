"""Momentum updates: record one, list recent ones."""

from datetime import timedelta

from bot.messages import UPDATE_RECORDED, Reply
from bot.request import Request
from handlers.common import city_names, day_of, display_names
from store.models import Update
from store.repo import Store

DEFAULT_DAYS = 7
MAX_DAYS = 366
LIST_LIMIT = 25


def record_update(req: Request, store: Store) -> Reply:
    city = req.cities[0]
    if not req.args:
        return Reply(text="Tell me what moved: `update: we tested the intake form with 5 residents`")
    update = store.add_update(
        Update(
            city_id=city.id,  # type: ignore[arg-type]
            author=req.speaker.identity,
            text=req.args,
            platform=req.message.platform,
            created_at=req.now,
        )
    )
    return Reply(
        text=f"Update #{update.id} recorded for {city.name}. Thanks for keeping momentum!",
        kind=UPDATE_RECORDED,
    )


def list_updates(req: Request, store: Store) -> Reply:
    days = req.days_or(DEFAULT_DAYS, MAX_DAYS)
    ids = [c.id for c in req.cities if c.id is not None]
    updates = store.updates(ids, req.now - timedelta(days=days), limit=LIST_LIMIT)
    scope = city_names(req.cities)
    title = f"Updates in the last {days} days — {scope}"
    if not updates:
        return Reply(text=f"No updates in the last {days} days for {scope}.", title=title)
    by_id = {c.id: c for c in req.cities}
    names = display_names(store, (u.author for u in updates))
    several = len(req.cities) > 1
    items = []
    for u in updates:
        city = by_id[u.city_id]
        where = f" · {city.name}" if several else ""
        items.append(f"#{u.id} {day_of(u.created_at, city)}{where} · {names[u.author]}: {u.text}")
    more = " (newest 25 shown)" if len(updates) == LIST_LIMIT else ""
    return Reply(text=f"{title}{more}\n" + "\n".join(items), title=title, items=items)
