"""Talking to the bot from the terminal: `say`, `chat` and `demo`."""

import asyncio
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


def chat_loop(engine: Engine, identity: str) -> None:
    clock = SystemClock()
    while True:
        try:
            text = out.input(f"[bold cyan]{identity}[/]> ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if text.strip() in ("/quit", "/exit"):
            return
        if text.strip().startswith("/as "):
            try:
                identity = normalize_identity(text.strip()[4:])
            except IdentityError as error:
                out.print(f"[red]{escape(str(error))}[/]")
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
        "Ctrl-D or /quit to leave."
    )
    chat_loop(engine, identity)
