"""Turning text into a command: `/cda …`, `cda …`, and the short forms `update: …`, `blocker: …`."""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.calendar.questions import asks_schedule
from bot.core.i18n import N_, unaccented

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
        "dashboard",
        "next",
        "help",
        "join",
        "stop",
        "start",
    }
)
WRITES = ("update", "blocker")  # the commands that store something: never run on a guess

_SHORT = re.compile(r"^(update|blocker)\s*[:：]\s*(.*)$", re.IGNORECASE | re.DOTALL)
_JOIN = re.compile(r"^join\s+(\S.{0,40})$", re.IGNORECASE)
# Said on their own, to the bot: what people reply to stop (or resume) messages, in the three languages.
STOP_WORDS = frozenset({"stop", "parar", "sair", "baja"})
START_WORDS = frozenset({"start", "iniciar"})
# The command words as a Spanish or Portuguese speaker may type them (accents and case aside): the
# English command is suggested, as for a typo, so a write is still never run on a guess.
_LOCAL_NAMES = {
    **dict.fromkeys(("actualizacion", "atualizacao", "avance", "avanco", "novedad", "novidade"), "update"),
    **dict.fromkeys(("bloqueo", "bloqueio", "obstaculo", "impedimento"), "blocker"),
    **dict.fromkeys(("actualizaciones", "atualizacoes", "avances", "avancos", "novedades"), "updates"),
    **dict.fromkeys(("novidades",), "updates"),
    **dict.fromkeys(("bloqueos", "bloqueios", "obstaculos", "impedimentos"), "blockers"),
    **dict.fromkeys(("estado", "situacion", "situacao"), "status"),
    **dict.fromkeys(("proxima", "siguiente", "sesion", "sessao"), "next"),
    **dict.fromkeys(("resolver",), "resolve"),
    **dict.fromkeys(("resumen", "resumo"), "digest"),
    **dict.fromkeys(("exportar",), "export"),
    **dict.fromkeys(("panel", "tablero", "painel"), "dashboard"),
    **dict.fromkeys(("ayuda", "ajuda"), "help"),
    **dict.fromkeys(STOP_WORDS - {"stop"}, "stop"),
    **dict.fromkeys(START_WORDS - {"start"}, "start"),
}
_SHORT_LIKE = re.compile(r"^([^\W\d_]+)\s*[:：]", re.IGNORECASE)
PREFIX = re.compile(r"^/?cda(?:\s+|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str  # one of NAMES, "ask" (a schedule question), "unknown" or "empty"
    args: str = ""
    suggestion: str | None = None  # of an "unknown" one: the command it looks like, as typed (`/cda status`)


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
        # `/cda update:text` is the short form after the prefix, colon and all.
        short = _SHORT.match(rest)
        if short:
            return Command(short.group(1).lower(), short.group(2).strip())
        # Any space ends the command word: a line break too (`cda update` then the update's lines).
        word, args = [*rest.split(maxsplit=1), ""][:2]
        word = word.lower().rstrip(":")
        if word in NAMES:
            return Command(word, args.strip())
        guess = _local(word) or closest(word, sorted(NAMES))
        # Someone who meant to post is told so, even when the rest reads like a question.
        if guess in WRITES:
            return Command("unknown", rest, f"/cda {guess}")
        if asks_schedule(rest):
            return Command("ask", rest)
        return Command("unknown", rest, f"/cda {guess}" if guess else None)
    if addressed:
        joining = _JOIN.match(text)
        if joining:
            return Command("join", joining.group(1).strip())
        word = text.lower().strip(" .!¡")
        if word in STOP_WORDS:
            return Command("stop")
        if word in START_WORDS:
            return Command("start")
    mistyped = _SHORT_LIKE.match(text)
    guess = None
    if mistyped:
        word = mistyped.group(1).lower()
        guess = _local(word) or closest(word, WRITES)
    if guess in WRITES:
        return Command("unknown", text, f"{guess}:")
    if text.lower().rstrip("?! .") in {"help", "ayuda", "ajuda", ""}:
        return Command("help")
    if asks_schedule(text, strict=not addressed):
        return Command("ask", text)
    return Command("unknown", text)


def _local(word: str) -> str | None:
    """The command a Spanish or Portuguese command word stands for."""
    return _LOCAL_NAMES.get(unaccented(word))


def closest(word: str, names: Iterable[str]) -> str | None:
    """The name `word` is most likely a typo of: one edit away (two for names of seven letters or
    more), a swap of neighbours counting as one edit. Ties go to the first name given."""
    best: tuple[int, str] | None = None
    for name in names:
        allowed = 2 if len(name) >= 7 else 1
        if abs(len(word) - len(name)) > allowed:
            continue
        distance = _edits(word, name)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, name)
    return best[1] if best else None


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps."""
    previous: list[int] = []
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, row = previous, row, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
    return row[len(b)]


MAX_DAYS = 366
DAYS_NEGATIVE = N_("The number of days must be a whole number from 1 to 366, and {value} is negative.")
DAYS_ZERO = N_("The number of days must be a whole number from 1 to 366, not zero.")
DAYS_NOT_A_NUMBER = N_("The number of days must be a whole number from 1 to 366, and '{value}' is not one.")
EXTRA_WORDS = N_("`{usage}` doesn't take {words}. Say `/cda help` to see what each command takes.")

# What each listing command takes after its name: a city (any other words), `all`, a number of days.
TAKES: dict[str, frozenset[str]] = {
    "blockers": frozenset({"city", "all"}),
    "updates": frozenset({"city", "days"}),
    "status": frozenset({"city"}),
    "next": frozenset({"city"}),
    "quiet": frozenset({"days"}),
    "digest": frozenset(),
}
# Translated where shown: the words in brackets read as the help names them (`[ciudad] [días]`).
USAGE = {
    "blockers": N_("/cda blockers [city] [all]"),
    "updates": N_("/cda updates [city] [days]"),
    "status": N_("/cda status [city]"),
    "next": N_("/cda next [city]"),
    "quiet": N_("/cda quiet [days]"),
    "digest": "/cda digest",
}
# "-5", "0", "2.5", "1,000": meant as a number, whether or not it is a good one.
_NUMBERISH = re.compile(r"[+-]?\d+(?:[.,]\d+)*", re.ASCII)


class ArgumentError(ValueError):
    """Arguments a command cannot take. `message` is a text to translate, then fill with `values`."""

    def __init__(self, message: str, **values: str) -> None:
        super().__init__(message)
        self.message = message
        self.values = values


def extra_words(command: str, words: list[str]) -> ArgumentError:
    return ArgumentError(EXTRA_WORDS, usage=USAGE[command], words=", ".join(f"'{w}'" for w in words))


@dataclass(frozen=True)
class ListingArgs:
    """`[city] [all] [days]` as taken by blockers, updates, status, next, quiet and digest."""

    city: str | None
    include_all: bool
    days: int | None


def parse_listing(args: str, command: str) -> ListingArgs:
    """What `command` was given; ArgumentError for a bad number of days or words it does not take."""
    takes = TAKES[command]
    city: list[str] = []
    extra: list[str] = []
    include_all = False
    days: int | None = None
    for word in args.split():
        numberish = _NUMBERISH.fullmatch(word) is not None
        if word.lower() == "all" and "all" in takes and not include_all:
            include_all = True
        elif "days" in takes and days is None and (numberish or "city" not in takes):
            days = _days(word)
        elif "city" in takes and not numberish and word.lower() != "all":
            city.append(word)
        else:
            extra.append(word)
    if extra:
        raise extra_words(command, extra)
    return ListingArgs(" ".join(city) or None, include_all, days)


def _days(word: str) -> int:
    if not word.lstrip("+-").isascii() or not word.lstrip("+-").isdigit():
        raise ArgumentError(DAYS_NOT_A_NUMBER, value=word)
    if word.startswith("-") and word.strip("-0"):
        raise ArgumentError(DAYS_NEGATIVE, value=word)
    digits = word.lstrip("+-").lstrip("0")
    if not digits:
        raise ArgumentError(DAYS_ZERO)
    # Past a year every listing is the same: no need to read a number of any length.
    return int(digits) if len(digits) <= 4 else MAX_DAYS + 1
