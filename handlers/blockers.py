"""Blockers: open one (and tell the city's coaches), resolve one, list them."""

from datetime import timedelta

from bot.messages import Button, Reply
from bot.request import Request
from handlers.common import city_names, day_of, display_names, plural
from store.models import Blocker, BlockerStatus, OutboxMessage
from store.repo import Store

NOTICE_EXPIRES = timedelta(days=14)


def open_blocker(req: Request, store: Store) -> Reply:
    city = req.cities[0]
    if not req.args:
        return Reply(text="Say what is in the way: `blocker: waiting on data-sharing agreement with 311`")
    blocker = store.add_blocker(
        Blocker(city_id=city.id, author=req.speaker.identity, text=req.args, opened_at=req.now)  # type: ignore[arg-type]
    )
    notice = Reply(
        text=f"New blocker #{blocker.id} in {city.name} from {req.speaker.display}: {blocker.text}",
        title=f"New blocker #{blocker.id} — {city.name}",
        buttons=[
            Button(
                label="Resolve",
                action="resolve_blocker",
                value=str(blocker.id),
                command=f"/cda resolve {blocker.id}",
            )
        ],
    )
    coaches = store.coaches_of(city.id)  # type: ignore[arg-type]
    for coach in coaches:
        store.enqueue(
            OutboxMessage(
                key=f"blocker_opened:{blocker.id}:{coach.identity}",
                recipient=coach.identity,
                kind="blocker_opened",
                city_id=city.id,
                payload=notice.model_dump(),
                due_at=req.now,
                next_attempt_at=req.now,
                expires_at=req.now + NOTICE_EXPIRES,
                created_at=req.now,
            )
        )
    told = "Your coaches have been told." if coaches else "No coach is assigned to your city yet."
    return Reply(text=f"Blocker #{blocker.id} logged for {city.name}. {told}")


def resolve_blocker(req: Request, store: Store) -> Reply:
    number, _, note = req.args.strip().partition(" ")
    number = number.lstrip("#")
    if not number.isdigit():
        return Reply(
            text="Which blocker? Say `/cda resolve <number> [note]`, e.g. `/cda resolve 12 data arrived`."
        )
    blocker = store.blocker(int(number))
    if blocker is None or blocker.city_id not in req.speaker.accessible_ids:
        # Same answer whether the blocker exists elsewhere or not at all: other cities stay invisible.
        return Reply(
            text=f"There is no blocker #{number} in your {'city' if req.speaker.city else 'cities'}."
        )
    if blocker.status == BlockerStatus.resolved:
        assert blocker.resolved_at is not None
        city = store.city(blocker.city_id)
        assert city is not None
        return Reply(
            text=f"Blocker #{blocker.id} was already resolved on {day_of(blocker.resolved_at, city)}."
        )
    store.resolve_blocker(blocker, req.speaker.identity, note.strip() or None, req.now)
    return Reply(
        text=f"Blocker #{blocker.id} resolved. {('Note: ' + note.strip()) if note.strip() else ''}".strip()
    )


def list_blockers(req: Request, store: Store) -> Reply:
    ids = [c.id for c in req.cities if c.id is not None]
    blockers = store.blockers(ids, include_resolved=req.include_all)
    scope = city_names(req.cities)
    kind = "All blockers" if req.include_all else "Open blockers"
    title = f"{kind} — {scope}"
    if not blockers:
        none = "No blockers" if req.include_all else "No open blockers"
        return Reply(text=f"{none} for {scope}.", title=title)
    by_id = {c.id: c for c in req.cities}
    names = display_names(store, (b.author for b in blockers))
    several = len(req.cities) > 1
    items = []
    for b in blockers:
        city = by_id[b.city_id]
        where = f"{city.name} · " if several else ""
        age = max((req.now - b.opened_at).days, 0)
        state = "open" if b.status == BlockerStatus.open else f"resolved {day_of(b.resolved_at, city)}"  # type: ignore[arg-type]
        items.append(
            f"#{b.id} {where}{state} · opened {day_of(b.opened_at, city)} ({plural(age, 'day')}) "
            f"by {names[b.author]}: {b.text}"
        )
    return Reply(text=f"{title}\n" + "\n".join(items), title=title, items=items)
