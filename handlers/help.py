"""What the sender may do, and the hint for text that is no command."""

from bot.core.i18n import N_
from bot.core.messages import Reply
from bot.core.request import Request, SpeakerRole
from store.repo import Store

MEMBER = [
    N_("`update: <text>` — record a momentum update for your city"),
    N_("`blocker: <text>` — log a blocker; your coaches are told"),
    N_("`/cda resolve <number> [note]` — resolve one of your city's blockers"),
    N_("`/cda blockers [all]` — open (or all) blockers of your city"),
    N_("`/cda updates [days]` — recent updates of your city"),
    N_("`/cda status` — your city at a glance"),
    N_("`/cda next` — your next coaching session"),
    N_("Questions such as “what's on this week?”, “when is the convening?”, “LL2 end?”"),
]
COACH = [
    N_("`/cda status [city]` — phase, last update, updates in 7 days, open blockers, next session"),
    N_("`/cda blockers [city] [all]` — open (or all) blockers"),
    N_("`/cda updates [city] [days]` — recent updates, newest first"),
    N_("`/cda resolve <number> [note]` — resolve a blocker"),
    N_("`/cda quiet [days]` — cities with no update in N days (default 7)"),
    N_("`/cda digest` — the weekly digest now"),
    N_("`/cda export updates|blockers` — CSV of your cities"),
    N_("`/cda dashboard` — a sign-in link to the page of your cities, sent to you alone"),
    N_("`/cda next` — next coaching sessions"),
]
UNKNOWN = N_("I don't know which city you are with yet: ask your coach or an admin to add you to the roster.")
# A coach (or admin) with no city: on the roster, so "ask your coach" and "the roster" would be wrong.
NO_CITY_COACHED = N_("You don't coach any city yet: ask an admin to add you with `cda-bot coach add`.")
# Every city they coach is archived: "all my cities" is empty, but each is still shown where named.
NO_CITY_IN_PROGRAM = N_(
    "Every city you coach has left the program. Name one to see it: `/cda status {city}`."
)
HINT = N_("I didn't catch that. Try `update: …`, `blocker: …`, `/cda next` or `/cda help`.")
HELP_LINE = N_("`/cda help` — this list")


def help_reply(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    role = req.speaker.role
    if role == SpeakerRole.member:
        city = req.speaker.city.name if req.speaker.city else ""
        title, lines = _("What you can do ({city} team)").format(city=city), MEMBER
    elif role in (SpeakerRole.coach, SpeakerRole.admin):
        title = _("What you can do (admin)") if role == SpeakerRole.admin else _("What you can do (coach)")
        lines = COACH
    else:
        title, lines = _("Hello! I'm the City Data Alliance bot."), [UNKNOWN]
    items = [_(line) for line in [*lines, HELP_LINE]]
    # A member's title names their city: a channel of another city must not show it.
    own = [req.speaker.city.id] if req.speaker.city is not None and req.speaker.city.id is not None else []
    text = title + "\n" + "\n".join(f"• {i}" for i in items)
    return Reply(text=text, title=title, items=items, about=own)
