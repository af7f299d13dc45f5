"""Blockers: open one (and tell the city's coaches), resolve one (and tell the others), list them."""

from datetime import datetime, timedelta

from bot.core.i18n import Translator, translator
from bot.core.messages import BLOCKER_LOGGED, BLOCKER_RESOLVED, Button, Reply
from bot.core.request import Request, Speaker
from handlers.common import city_names, day_of, opened_by, says_nothing
from store import views
from store.models import Blocker, BlockerStatus, City, OutboxMessage
from store.repo import Store

NOTICE_EXPIRES = timedelta(days=14)
MAX_ID_DIGITS = 9  # every id below 10⁹ fits a 32-bit integer column


def open_blocker(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    city = req.cities[0]
    if says_nothing(req.args):
        return Reply(text=_("Say what is in the way: `blocker: waiting on data-sharing agreement with 311`"))
    blocker = store.add_blocker(
        Blocker(city_id=city.id, author=req.speaker.identity, text=req.args, opened_at=req.now)  # type: ignore[arg-type]
    )
    # Coaches read the notice in English: the program team works in English whatever the city speaks.
    c = translator("en").gettext
    notice = Reply(
        text=c("New blocker #{number} in {city} from {who}: {text}").format(
            number=blocker.id, city=city.name, who=req.speaker.display, text=blocker.text
        ),
        title=c("New blocker #{number} — {city}").format(number=blocker.id, city=city.name),
        buttons=[
            Button(
                label=c("Resolve"),
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
                payload=notice.model_dump(mode="json"),
                due_at=req.now,
                next_attempt_at=req.now,
                expires_at=req.now + NOTICE_EXPIRES,
                created_at=req.now,
            )
        )
    told = _("Your coaches have been told.") if coaches else _("No coach is assigned to your city yet.")
    logged = _("Blocker #{number} logged for {city}.").format(number=blocker.id, city=city.name)
    return Reply(text=f"{logged} {told}", kind=BLOCKER_LOGGED)


def resolve_blocker(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    number, _sep, note = req.args.strip().partition(" ")
    number, note = number.lstrip("#"), note.strip()
    if not (number.isascii() and number.isdigit()):
        return Reply(
            text=_("Which blocker? Say `/cda resolve <number> [note]`, e.g. `/cda resolve 12 data arrived`.")
        )
    return resolve_numbered(store, req.speaker, number, note, req.now, req.t)


def resolve_numbered(
    store: Store, speaker: Speaker, number: str, note: str, now: datetime, t: Translator
) -> Reply:
    """Resolve blocker `number` (digits) with the speaker's rights; chat and the coaches' page alike."""
    _ = t.gettext
    # Past the largest id a database can hold there is no such blocker; asking would be an error.
    blocker = store.blocker(int(number)) if len(number) <= MAX_ID_DIGITS else None
    if blocker is None or blocker.city_id not in speaker.accessible_ids:
        # Same answer whether the blocker exists elsewhere or not at all: other cities stay invisible.
        if speaker.city:
            return Reply(text=_("There is no blocker #{number} in your city.").format(number=number))
        return Reply(text=_("There is no blocker #{number} in your cities.").format(number=number))
    city = store.city(blocker.city_id)
    assert city is not None
    if blocker.status == BlockerStatus.resolved:
        assert blocker.resolved_at is not None
        return Reply(
            text=_("Blocker #{number} was already resolved on {date}.").format(
                number=blocker.id, date=day_of(t, blocker.resolved_at, city)
            ),
            about=[city.id],  # type: ignore[list-item]
        )
    store.resolve_blocker(blocker, speaker.identity, note or None, now)
    _tell_coaches_resolved(store, blocker, city, speaker, now)
    if note:
        text = _("Blocker #{number} resolved. Note: {note}").format(number=blocker.id, note=note)
    else:
        text = _("Blocker #{number} resolved.").format(number=blocker.id)
    return Reply(text=text, about=[city.id], kind=BLOCKER_RESOLVED)  # type: ignore[list-item]


def _tell_coaches_resolved(store: Store, blocker: Blocker, city: City, by: Speaker, now: datetime) -> None:
    """The city's other coaches learn that a blocker they were told about is out of the way."""
    c = translator("en").gettext
    text = c("Blocker #{number} in {city} resolved by {who}: {text}").format(
        number=blocker.id, city=city.name, who=by.display, text=blocker.text
    )
    if blocker.resolution_note:
        text += "\n" + c("Note: {note}").format(note=blocker.resolution_note)
    title = c("Blocker #{number} resolved — {city}").format(number=blocker.id, city=city.name)
    notice = Reply(text=text, title=title)
    for coach in store.coaches_of(city.id):  # type: ignore[arg-type]
        if coach.identity == by.identity:
            continue
        store.enqueue(
            OutboxMessage(
                key=f"blocker_resolved:{blocker.id}:{coach.identity}",
                recipient=coach.identity,
                kind="blocker_resolved",
                city_id=city.id,
                payload=notice.model_dump(mode="json"),
                due_at=now,
                next_attempt_at=now,
                expires_at=now + NOTICE_EXPIRES,
                created_at=now,
            )
        )


def list_blockers(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    ids = [c.id for c in req.cities if c.id is not None]
    blockers = views.listed_blockers(store, ids, include_resolved=req.include_all)
    scope = city_names(req.cities)
    title = (_("All blockers — {cities}") if req.include_all else _("Open blockers — {cities}")).format(
        cities=scope
    )
    if not blockers:
        none = _("No blockers for {cities}.") if req.include_all else _("No open blockers for {cities}.")
        return Reply(text=none.format(cities=scope), title=title)
    by_id = {c.id: c for c in req.cities}
    several = len(req.cities) > 1
    items = []
    for b in blockers:
        city = by_id[b.city_id]
        where = f"{city.name} · " if several else ""
        if b.status == BlockerStatus.open:
            state = _("open")
        else:
            state = _("resolved {date}").format(date=day_of(req.t, b.resolved_at, city))  # type: ignore[arg-type]
        opened = opened_by(req.t, b.opened_at, city, req.now, b.name or b.author)
        items.append(f"#{b.id} {where}{state} · {opened}: {b.text}")
    return Reply(text=f"{title}\n" + "\n".join(items), title=title, items=items)
