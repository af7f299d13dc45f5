"""Turning text into a command: `/cda …`, `cda …`, and the short forms `update: …`, `blocker: …`."""

import re
from dataclasses import dataclass

from bot.calendar.questions import asks_schedule

NAMES = frozenset(
    {
        "update",
        "blocker",
        "resolve",
        "blockers",
        "updates",
        "status",
        "quiet",
        "digest",
        "export",
        "next",
        "help",
    }
)

_SHORT = re.compile(r"^(update|blocker)\s*[:：]\s*(.*)$", re.IGNORECASE | re.DOTALL)
PREFIX = re.compile(r"^/?cda(?:\s+|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str  # one of NAMES, "ask" (a schedule question), "unknown" or "empty"
    args: str = ""


def parse(text: str, addressed: bool = True) -> Command:
    """`addressed`: said to the bot; chatter in a shared channel needs to look like a question."""
    text = text.strip()
    if not text:
        return Command("empty")
    short = _SHORT.match(text)
    if short:
        return Command(short.group(1).lower(), short.group(2).strip())
    prefixed = PREFIX.match(text)
    if prefixed:
        rest = text[prefixed.end() :].strip()
        if not rest:
            return Command("help")
        word, _, args = rest.partition(" ")
        word = word.lower().rstrip(":")
        if word in NAMES:
            return Command(word, args.strip())
        return Command("ask", rest) if asks_schedule(rest) else Command("unknown", rest)
    if text.lower().rstrip("?! .") in {"help", "ayuda", "ajuda", ""}:
        return Command("help")
    if asks_schedule(text, strict=not addressed):
        return Command("ask", text)
    return Command("unknown", text)


@dataclass(frozen=True)
class ListingArgs:
    """`[city] [all] [days]` as taken by blockers, updates and status."""

    city: str | None
    include_all: bool
    days: int | None


def parse_listing(args: str) -> ListingArgs:
    words: list[str] = []
    include_all = False
    days: int | None = None
    for word in args.split():
        if word.lower() == "all":
            include_all = True
        elif word.isascii() and word.isdigit():
            # Past a year, every listing is the same: no need to read a number of any length.
            days = int(word) if len(word) <= 4 else 9999
        else:
            words.append(word)
    return ListingArgs(" ".join(words) or None, include_all, days)
