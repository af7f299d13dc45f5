"""The coaches' page from the command line: ending a person's sessions."""

import typer

from bot import admin
from bot.cli.common import Db, admin_write
from bot.core.clock import SystemClock
from store.repo import Store
from web.signin import revoke

dashboard_app = typer.Typer(help="The coaches' page (`/cda dashboard`).", no_args_is_help=True)


@dashboard_app.command("revoke")
def dashboard_revoke(identity: str, db: Db = None) -> None:
    """Sign IDENTITY out of the coaches' page everywhere, now; links it has not opened stop working too."""

    def action(store: Store) -> str:
        who = admin.identity(identity)
        ended = revoke(store, who, SystemClock().now())
        sessions = "session" if ended == 1 else "sessions"
        return f"ended {ended} {sessions} of {who} on the coaches' page; unopened links no longer work"

    admin_write(db, action)
