"""Momentum updates: record one, list recent ones."""

from datetime import timedelta

from bot.core.messages import UPDATE_RECORDED, Reply
from bot.core.request import Request
from handlers.common import city_names, day_of, says_nothing
from store import views
from store.repo import Store

DEFAULT_DAYS = 7
MAX_DAYS = 366
LIST_LIMIT = 25


def record_update(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    city = req.cities[0]
    if says_nothing(req.args):
        return Reply(text=_("Tell me what moved: `update: we tested the intake form with 5 residents`"))
    number = store.add_update(
        city.id,  # type: ignore[arg-type]
        req.speaker.identity,
        req.args,
        req.message.platform,
        req.now,
    )
    return Reply(
        text=_("Update #{number} recorded for {city}. Thanks for keeping momentum!").format(
            number=number, city=city.name
        ),
        kind=UPDATE_RECORDED,
    )


def list_updates(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    days = req.days_or(DEFAULT_DAYS, MAX_DAYS)
    ids = [c.id for c in req.cities if c.id is not None]
    updates = views.listed_updates(store, ids, req.now - timedelta(days=days), LIST_LIMIT)
    scope = city_names(req.cities)
    title = req.t.ngettext(
        "Updates in the last {days} day — {cities}", "Updates in the last {days} days — {cities}", days
    ).format(days=req.t.number(days), cities=scope)
    if not updates:
        none = req.t.ngettext(
            "No updates in the last {days} day for {cities}.",
            "No updates in the last {days} days for {cities}.",
            days,
        )
        return Reply(text=none.format(days=req.t.number(days), cities=scope), title=title)
    by_id = {c.id: c for c in req.cities}
    several = len(req.cities) > 1
    items = []
    for u in updates:
        city = by_id[u.city_id]
        where = f" · {city.name}" if several else ""
        items.append(f"#{u.id} {day_of(req.t, u.created_at, city)}{where} · {u.name or u.author}: {u.text}")
    # LIST_LIMIT is a constant well above one, so the plural needs no ngettext.
    newest = _("(newest {count} shown)").format(count=req.t.number(LIST_LIMIT))
    more = " " + newest if len(updates) == LIST_LIMIT else ""
    return Reply(text=f"{title}{more}\n" + "\n".join(items), title=title, items=items)
