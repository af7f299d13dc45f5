"""`stop` and `start`: a person turns off, and back on, what the bot sends them unprompted (reminders,
nudges, digests, notices). Replies to what they say still go out."""

from bot.core.i18n import N_
from bot.core.messages import Reply
from bot.core.request import Request
from store.repo import Store

STOPPED = N_(
    "Done: I won't send you reminders or anything else unprompted any more. I still answer what you "
    "send. Say `start` to turn them back on."
)
STARTED = N_("Done: reminders and other messages from me are on again. Say `stop` to turn them off.")
NOTHING = N_("I send you nothing unprompted here: your team's reminders go to its channel. Nothing changed.")


def stop(req: Request, store: Store) -> Reply:
    return _set(req, store, stopped=True)


def start(req: Request, store: Store) -> Reply:
    return _set(req, store, stopped=False)


def _set(req: Request, store: Store, stopped: bool) -> Reply:
    _ = req.t.gettext
    # Someone who is a member only by speaking in a bound channel has no row: nothing is sent to them.
    if not store.set_stopped(req.speaker.identity, req.now if stopped else None):
        return Reply(text=_(NOTHING))
    return Reply(text=_(STOPPED if stopped else STARTED))
