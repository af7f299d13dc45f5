"""`/cda dashboard`: a one-time link to the coaches' page, for the person who asked and nobody else."""

from bot.core.messages import Reply
from bot.core.request import Request
from bot.runtime.settings import Settings
from store.repo import Store
from web.signin import WebConfig, issue_link


def dashboard_link(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    # Read when asked, not at import: `say`, `chat` and `serve` each run with their own environment.
    config = WebConfig.from_settings(Settings())
    url = issue_link(store, req.speaker.identity, req.t.language, req.now, config)
    title = _("Your coaches' page")
    body = _(
        "Open this link to see your cities at a glance: {url}\n"
        "It is for you alone, works once and expires in 15 minutes; say `/cda dashboard` again for a new one."
    ).format(url=url)
    return Reply(text=f"{title}\n{body}", title=title, personal=True)
