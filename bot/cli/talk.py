"""Talking to the bot from the terminal: `say`, `chat` and `demo`."""

import asyncio
import os
import select
import sys
from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy import Engine

from adapters.console.adapter import ConsoleAdapter, inbound
from adapters.text import render_text
from bot.cli.common import Db, Now, clock_for, engine_for, out, speaker
from bot.cli.demo import DEMO_USER, seed
from bot.core.clock import Clock, SystemClock
from bot.core.identity import IdentityError, normalize_identity
from bot.core.inbox import Dispatcher
from bot.runtime.delivery import Deliverer
from store.repo import open_store


def converse(engine: Engine, clock: Clock, identity: str, text: str) -> list[str]:
    """One message in; the replies, then whatever unprompted messages became due for console users."""
    replies = Dispatcher(engine, clock).handle(inbound(identity, text, clock.now()))
    printed = [render_text(reply) for reply in replies]
    # The replies were just shown; what else became due for console users is delivered as usual.
    deliverer = Deliverer(engine, {"console": ConsoleAdapter(printed.append)}, clock)
    asyncio.run(deliverer.deliver_due())
    return printed


def say(
    text: Annotated[str, typer.Argument(help="The message, as it would be typed in the channel")],
    as_: Annotated[str, typer.Option("--as", help="Who speaks, e.g. console:ana or slack:T0001:U0001")],
    now: Now = None,
    db: Db = None,
) -> None:
    """Send one message to the bot and print its reply."""
    identity, clock = speaker(as_), clock_for(now)
    for line in converse(engine_for(db), clock, identity, text):
        print(line)


AS_USAGE = "/as <platform>:<id>, e.g. /as console:coach"
PASTE_GAP = 0.05  # seconds: the lines of a paste arrive together, a person's next line much later


def line_editing() -> bool:
    """Whether `input()` edits lines itself (readline), reading key by key: then a line has no length
    limit. Without it a terminal's kernel edits the line and drops what comes past its limit."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    try:
        import readline  # noqa: F401 (importing it is what makes input() use it)
    except ImportError:
        return False
    return True


def terminal_line_limit() -> int:
    """Bytes of one line a terminal keeps when its kernel edits lines (Linux: 4,096 less the newline;
    elsewhere MAX_CANON, 1,024 on macOS); whatever is typed or pasted past that is silently dropped."""
    if sys.platform.startswith("linux"):
        return 4095
    try:
        return os.fpathconf(sys.stdin.fileno(), "PC_MAX_CANON") - 1
    except (AttributeError, OSError, ValueError):
        return 4095


def more_waiting() -> bool:
    try:
        return bool(select.select([sys.stdin], [], [], PASTE_GAP)[0])
    except (OSError, ValueError):  # stdin that select cannot watch (Windows): one line a message
        return False


def read_message(prompt: str) -> list[str]:
    """The lines of one message: on a terminal, a line and the lines that came with it (a paste);
    piped, one line. Raises EOFError at the end of the input."""
    lines = [input(prompt)]
    while sys.stdin.isatty() and more_waiting():
        try:
            lines.append(input())
        except EOFError:
            break
    return lines


def cut_short(lines: list[str], editing: bool) -> bool:
    """True when the terminal may have dropped the end of a line: never store the stump."""
    if editing or not sys.stdin.isatty():
        return False
    return any(len(line.encode()) >= terminal_line_limit() for line in lines)


def chat_loop(engine: Engine, identity: str) -> None:
    clock = SystemClock()
    editing = line_editing()
    while True:
        # readline measures the prompt to redraw the line; \001…\002 hide the colour codes from it.
        prompt = f"\001\033[1;36m\002{identity}\001\033[0m\002> " if editing else f"{identity}> "
        try:
            lines = read_message(prompt)
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if cut_short(lines, editing):
            out.print(
                f"[red]That text reached this terminal's limit of {terminal_line_limit():,} characters a "
                "line, so its end was lost: nothing was sent.[/] Send long text with "
                '[cyan]cda-bot say --as IDENTITY "$(cat FILE)"[/], or in shorter lines.'
            )
            continue
        text = "\n".join(lines)
        words = text.split(maxsplit=1)
        if not words:
            continue  # Enter on an empty line asks for the prompt again, as in a shell
        # `exit` and `quit` too, as in a shell or Python's prompt: nobody says that to the bot.
        if text.strip().lower() in ("/quit", "/exit", "exit", "quit"):
            return
        if words[:1] == ["/as"]:
            if len(words) == 1:
                out.print(f"/as needs an identity: {escape(AS_USAGE)}")
                continue
            try:
                identity = normalize_identity(words[1])
            except IdentityError as error:
                out.print(f"[red]{escape(str(error))}[/] (e.g. /as console:coach)")
            continue
        for line in converse(engine, clock, identity, text):
            out.print(f"[green]bot[/] {escape(line)}")


def chat(
    as_: Annotated[str, typer.Option("--as", help="Who speaks, e.g. console:ana")],
    db: Db = None,
) -> None:
    """Chat with the bot in the terminal as IDENTITY."""
    identity = speaker(as_)
    engine = engine_for(db)
    out.print(
        f"Chatting as [bold]{identity}[/]. `/cda help` for commands, `/as IDENTITY` to switch, "
        "Ctrl-D to leave."
    )
    chat_loop(engine, identity)


def demo(
    db: Db = None, as_: Annotated[str, typer.Option("--as", help="Who you are in the chat")] = DEMO_USER
) -> None:
    """Create and seed a local database, then open a chat with the bot."""
    identity = speaker(as_)
    engine = engine_for(db)
    with open_store(engine) as store:
        created = seed(store, SystemClock().now())
    out.rule("[bold]cda-bot demo[/]")
    out.print("Seeded three sample cities." if created else "Using the demo data already in the database.")
    out.print(
        f"You are [bold]{identity}[/], a member of [bold]Riverton[/] (America/Chicago).\n"
        "Try:  [cyan]update: tested the new intake form with 5 residents[/]\n"
        "      [cyan]blocker: still waiting on the 311 data export[/]\n"
        "      [cyan]/cda status[/]   [cyan]/cda next[/]   [cyan]/cda blockers[/]   [cyan]/cda help[/]\n"
        "      [cyan]what's on this week?[/]   [cyan]when is the Baltimore convening?[/]\n"
        "Switch to the coach of all three cities with [cyan]/as console:coach[/] "
        "(other members, who hear Spanish and Portuguese: console:camila, console:joao).\n"
        "Ctrl-D or exit to leave."
    )
    chat_loop(engine, identity)
