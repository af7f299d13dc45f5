"""`cda-bot`: the root command, gathering the commands that each module of this package defines."""

import sys

import typer

from bot.cli import calendar, dashboard, ops, roster, talk
from bot.cli.common import Db, root_db

app = typer.Typer(
    help="cda-bot: the City Data Alliance chat-ops bot.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(db: Db = None) -> None:
    """`--db` before the command: every command uses it unless it is given its own."""
    root_db.set(db)


# `cda-bot --help` lists commands in the order they are registered here.
for command in (talk.say, talk.chat, talk.demo, ops.serve, roster.unbind, roster.bind, ops.tick):
    app.command()(command)
for sub, name in [
    (roster.city_app, "city"),
    (roster.member_app, "member"),
    (roster.coach_app, "coach"),
    (roster.admin_app, "admin"),
    (calendar.session_app, "session"),
    (calendar.calendar_app, "calendar"),
    (calendar.program_app, "program"),
    (ops.reminders_app, "reminders"),
    (ops.db_app, "db"),
    (dashboard.dashboard_app, "dashboard"),
]:
    app.add_typer(sub, name=name)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
