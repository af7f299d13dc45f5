"""What the sender may do, and the hint for text that is no command."""

from bot.messages import Reply
from bot.request import Request, SpeakerRole
from store.repo import Store

MEMBER = [
    "`update: <text>` — record a momentum update for your city",
    "`blocker: <text>` — log a blocker; your coaches are told",
    "`/cda resolve <number> [note]` — resolve one of your city's blockers",
    "`/cda blockers [all]` — open (or all) blockers of your city",
    "`/cda updates [days]` — recent updates of your city",
    "`/cda status` — your city at a glance",
    "`/cda next` — your next coaching session",
]
COACH = [
    "`/cda status [city]` — phase, last update, updates in 7 days, open blockers, next session",
    "`/cda blockers [city] [all]` — open (or all) blockers",
    "`/cda updates [city] [days]` — recent updates, newest first",
    "`/cda resolve <number> [note]` — resolve a blocker",
    "`/cda quiet [days]` — cities with no update in N days (default 7)",
    "`/cda digest` — the weekly digest now",
    "`/cda export updates|blockers` — CSV of your cities",
    "`/cda next` — next coaching sessions",
]
GUEST = [
    "I don't know which city you are with yet: ask your coach or an admin to add you to the roster.",
]

HINT = "I didn't catch that. Try `update: …`, `blocker: …`, `/cda next` or `/cda help`."


def help_reply(req: Request, store: Store) -> Reply:
    role = req.speaker.role
    if role == SpeakerRole.member:
        city = req.speaker.city.name if req.speaker.city else "your city"
        title, items = f"What you can do ({city} team)", MEMBER
    elif role in (SpeakerRole.coach, SpeakerRole.admin):
        title, items = f"What you can do ({role.value})", COACH
    else:
        title, items = "Hello! I'm the City Data Alliance bot.", [*GUEST, "`/cda help` — this list"]
    items = [*items, "`/cda help` — this list"] if role != SpeakerRole.guest else items
    return Reply(text=title + "\n" + "\n".join(f"• {i}" for i in items), title=title, items=items)
