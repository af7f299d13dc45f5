"""Understanding schedule questions in English, Spanish and Portuguese, typos and short forms included.

`understand(text, today)` turns a question into a `Question` (what is asked, about which event,
phase, day, week or month) or None when the text is not a schedule question. It knows nothing of
cities or answers; `today` is the asker's local date, so relative words follow the city's zone.
"""

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from bot.core.i18n import unaccented

EVENTS: dict[str, tuple[str, ...]] = {
    # "la convocatoria": what Spanish speakers often call a gathering the program summons them to.
    "convening": (
        "convening",
        "baltimore",
        "encuentro",
        "encontro",
        "convencion",
        "convencao",
        "convocatoria",
        "gathering",
    ),
    "site-visit": ("site visit", "visita", "visit"),
    "demo-day": ("demo day", "demoday", "dia de demostracion", "dia de demonstracao", "dia de demo", "demo"),
    "mvp-workshop": ("mvp",),
    "scoping-workshop": (
        "scoping workshop",
        "taller de alcance",
        "taller de definicion",
        "oficina de escopo",
    ),
    "scoping-peer-clinic sustainability-peer-clinic": ("peer clinic", "clinica", "clinic", "clinicas"),
    "mayor-check-ins": (
        "mayor",
        "alcalde",
        "alcaldesa",
        "alcaldia",
        "prefeito",
        "prefeita",
        "prefeitura",
        "check in",
        "check ins",
        "checkin",
        "checkins",
    ),
    "launch": ("program launch", "launch", "kickoff", "kick off", "lanzamiento", "lancamento"),
    "readiness": ("readiness", "assessment", "evaluacion", "avaliacao", "pathway recommendation"),
    "coaching-start": ("strategic coaching", "coaching estrategico", "coaching start", "coaching starts"),
    "scoping-workshop mvp-workshop": ("workshop", "taller", "oficina"),
}
PHASES: dict[str, tuple[str, ...]] = {
    "scoping": ("scoping", "alcance", "escopo"),
    "ll1": ("ll1", "prototype", "prototipo", "prototyping", "prototipado"),
    "ll2": ("ll2", "build", "construccion", "construcao"),
    "ll3": ("ll3", "scale", "escala", "escalar"),
    "capacity": ("capacity", "capacidades", "capacitacion"),
}
# Longer names rewritten to one token before matching, so "scale and launch" is a phase, not the launch.
# "learning loop two", "ciclo dos", "segundo ciclo", "terceiro ciclo de aprendizagem": a loop by number.
# Only an ordinal comes before: "um ciclo" is "a cycle".
ORDINALS: dict[str, str] = {
    word: number
    for number, words in (
        ("1", "first primer primero primeiro"),
        ("2", "second segundo"),
        ("3", "third tercer tercero terceiro"),
    )
    for word in words.split()
}
LOOP_NUMBERS: dict[str, str] = ORDINALS | {
    word: number
    for number, words in (("1", "1 one uno um"), ("2", "2 two dos dois"), ("3", "3 three tres"))
    for word in words.split()
}
_LOOP = r"(?:learning loop|ciclo de aprendizaje|ciclo de aprendizagem|learning|loop|ciclo|bucle|ll)"
LOOP_PATTERNS = (
    re.compile(rf"\b{_LOOP}\s*({'|'.join(sorted(LOOP_NUMBERS, key=len, reverse=True))})\b"),
    re.compile(rf"\b({'|'.join(ORDINALS)}) {_LOOP}\b"),
)
ALIASES: tuple[tuple[str, str], ...] = (
    (r"\bscale (?:and|&) launch\b", "ll3"),
    (r"\bescala (?:y|e) (?:lanzamiento|lancamento)\b", "ll3"),
    (r"\bsolution build\b", "ll2"),
    (r"\bconstruccion de la solucion\b", "ll2"),
    (r"\bconstrucao da solucao\b", "ll2"),
    (r"\bcapacity building\b", "capacity"),
    (r"\bnxt\b", "next"),
    (r"\b(?:sesh|sess|mtg)\b", "session"),
    (r"\b(?:tmrw|tmr|tmrow)\b", "tomorrow"),
    (r"\bwk\b", "week"),
    (r"\bwhats\b", "what is"),
)
START = frozenset(
    "start starts starting begin begins beginning kick empieza empiezan empezamos comienza comienzan "
    "comenzamos inicia inician iniciamos inicio comeca comecam comecamos iniciam open opens".split()
)
END = frozenset(
    "end ends ending finish finishes finished over close closes termina terminan terminamos acaba acaban "
    "fin final finaliza finalizan encerra encerram termino fim terminar acabar termine terminen acabe "
    "encerre".split()
)
# "the last session" is the series' final one; "our last session" asked in the past is the latest held.
LAST = frozenset("last final ultima ultimo ultimas ultimos".split())
PAST = frozenset("was were did had fue fueron tuvimos foi foram tivemos".split())
# Not "pasado": "pasado mañana" is the day after tomorrow.
PREVIOUS = frozenset("previous anterior pasada passada".split())
PROGRAM = frozenset("program programme programa cohort cohorte".split())
# "what's next in the program?", "¿qué sigue en el programa?", "o que vem a seguir no programa?"
COMING = frozenset(
    "next upcoming coming comes after ahead sigue siguen viene despues seguir vem depois".split()
)
SESSION = frozenset(
    "session sessions sesion sesiones sessao sessoes meeting meetings meet reunion reuniones reuniao "
    "reunioes call calls coaching llamada chamada reunimos encontramos".split()
)
NEXT = frozenset(["next", "upcoming", "proxima", "proximo", "proximas", "proximos", "siguiente", "seguinte"])
WEEK = frozenset(["week", "semana"])
MONTH = frozenset(["month", "mes"])
# A month named by where it stands from today: "this month", "el mes que viene", "mês passado".
NEXT_MONTH = (
    r"\b(?:next|coming|upcoming|proximo|siguiente|seguinte) (?:month|mes)\b"
    r"|\bmes (?:que viene|siguiente|que vem|seguinte)\b"
)
LAST_MONTH = r"\b(?:last|previous|past) month\b|\bmes (?:pasado|passado|passada|anterior)\b"
THIS_MONTH = r"\b(?:this|current|este|neste|esse|nesse) (?:month|mes)\b|\bmes (?:actual|atual|corriente)\b"
# "the next session this month?" asks for one session, not for the month.
NEXT_SESSION = r"\b(?:next|proxima|proximo|siguiente) (?:" + "|".join(sorted(SESSION)) + r")\b"
HOW_LONG = (
    r"\bhow (?:long|many (?:days|weeks|months))\b",
    r"\bcuan(?:to|tos|tas) (?:falta|faltan|queda|quedan|dias|semanas|meses)\b",
    r"\bquan(?:to|tos|tas) (?:falta|faltam|dias|semanas|meses)\b",
    r"\b(?:days|weeks) (?:until|left|till|to)\b",
    r"\bfaltan?\b|\bfaltam\b",
)
# The everyday "what's next?" as Spanish and Portuguese speakers ask it, where no "next" is said.
WHATS_NEXT = (r"\bque (?:sigue|viene)\b", r"\bque vem\b", r"\bvem a seguir\b")
CURRENT_PHASE = (
    r"\b(?:phase|fase|stage|etapa)\b",
    r"\bwhere are we\b",
    r"\bwhat (?:should|are) we\b",
    r"\bwhat does (?:it|this) involve\b",
    r"\b(?:que|qu) (?:debemos|deberiamos|tenemos que|hacemos)\b",
    r"\bo que (?:devemos|deveriamos|temos que|fazemos)\b",
    r"\ben que estamos\b|\bem que estamos\b",
)
QUESTION_WORDS = frozenset(
    "when what which how where whats cuando que cual como donde cuanto cuantos cuanta quando qual quanto "
    "quantos onde".split()
)
MONTHS: dict[str, int] = {}
for number, names in enumerate(
    (
        "january enero janeiro jan ene",
        "february febrero fevereiro feb fev",
        "march marzo marco mar",
        "april abril apr abr",
        "may mayo maio",
        "june junio junho jun",
        "july julio julho jul",
        "august agosto aug ago",
        "september septiembre setiembre setembro sep sept set",
        "october octubre outubro oct out",
        "november noviembre novembro nov",
        "december diciembre dezembro dec dic dez",
    ),
    start=1,
):
    for name in names.split():
        MONTHS[name] = number
# Short month names that are also ordinary words; they count only next to a day number.
AMBIGUOUS_MONTHS = frozenset({"mar", "may", "jun", "set", "out", "ago", "dec"})
WEEKDAYS: dict[str, int] = {}
for number, names in enumerate(
    (
        "monday mon lunes segunda",
        "tuesday tue tues martes terca",
        "wednesday wed miercoles quarta",
        "thursday thu thur thurs jueves quinta",
        "friday fri viernes sexta",
        "saturday sat sabado",
        "sunday sun domingo",
    )
):
    for name in names.split():
        WEEKDAYS[name] = number

TIME_WORDS = (
    NEXT
    | WEEK
    | MONTH
    | set(MONTHS)
    | set(WEEKDAYS)
    | {"today", "tomorrow", "hoy", "manana", "hoje", "amanha"}
)
VOCABULARY = sorted(
    {
        word
        for phrases in (*EVENTS.values(), *PHASES.values())
        for phrase in phrases
        for word in phrase.split()
    }
    | START
    | END
    # Only words a typo could reach (four letters or more): "does" must not become "dos".
    | {word for word in LAST | PAST | PREVIOUS | PROGRAM | COMING | set(LOOP_NUMBERS) if len(word) >= 4}
    | SESSION
    | NEXT
    | WEEK
    | QUESTION_WORDS
    | set(MONTHS)
    | set(WEEKDAYS)
    | {
        "today",
        "tomorrow",
        "hoy",
        "manana",
        "hoje",
        "amanha",
        "happens",
        "happening",
        "pasa",
        "acontece",
        "phase",
        "fase",
        "this",
        "esta",
        "este",
        "until",
        "long",
        "days",
        "week",
        "month",
        "mes",
    }
)


MAX_QUESTION = 500  # characters


@dataclass(frozen=True)
class Question:
    # next_session · last_session · previous_session · day · week · month · event · phase ·
    # current_phase · program (its start or end) · program_next
    intent: str
    events: tuple[str, ...] = ()
    phase: str | None = None
    boundary: str | None = None  # start · end
    day: date | None = None
    week_start: date | None = None
    month: date | None = None  # first day of the month asked about


def plain(text: str) -> str:
    """Lower case, accents and punctuation gone; nothing mended."""
    return " ".join(re.sub(r"[^a-z0-9-]+", " ", unaccented(text)).replace("-", " ").split())


def normalize(text: str) -> str:
    """Lower case, accents and punctuation gone, known aliases and typos mended."""
    text = " ".join(_mend(word) for word in plain(text).split())
    for loop in LOOP_PATTERNS:
        text = loop.sub(lambda match: "ll" + LOOP_NUMBERS[match.group(1)], text)
    for pattern, replacement in ALIASES:
        text = re.sub(pattern, replacement, text)
    return text


def cities_named(text: str, names: Iterable[str]) -> list[str]:
    """The names (as given) that `text` mentions as whole words, accents and case aside. A name that
    is also program vocabulary ("Baltimore" of the convening, "Mayo") is not taken for a city: the
    question means the program."""
    said = f" {plain(text)} "
    found = []
    for name in names:
        wanted = plain(name)
        if wanted and wanted not in VOCABULARY and not _is_program_phrase(wanted) and f" {wanted} " in said:
            found.append(name)
    return found


def _is_program_phrase(text: str) -> bool:
    return any(text in phrases for phrases in (*EVENTS.values(), *PHASES.values()))


def _mend(word: str) -> str:
    if len(word) < 4 or word.isdigit() or word in VOCABULARY:
        return word
    # Typos rarely change the first letter; requiring it keeps "doing" from becoming "domingo".
    same_start = [v for v in VOCABULARY if v[0] == word[0]]
    close = difflib.get_close_matches(word, same_start, n=1, cutoff=0.85)
    return close[0] if close else word


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _matches(text: str, table: dict[str, tuple[str, ...]]) -> list[str]:
    found: list[str] = []
    for keys, phrases in table.items():
        if any(_has(text, phrase) for phrase in phrases):
            found += [k for k in keys.split() if k not in found]
    return found


def is_question(text: str, strict: bool = False) -> bool:
    """Asked, or short: "next session", "LL2 end", "sesiones el 10 de diciembre". `strict` (for
    chatter in a shared channel, not said to the bot) wants a question mark or a question word."""
    words = normalize(text).split()
    if "?" in text or QUESTION_WORDS & set(words):
        return True
    if strict:
        return False
    # "sesiones el 10 de diciembre" asks; "great meeting everyone" does not.
    timed = bool(set(words) & TIME_WORDS) or any(w.isdigit() for w in words)
    return 0 < len(words) <= 3 or (bool(SESSION & set(words)) and timed and len(words) <= 8)


def understand(text: str, today: date, strict: bool = False) -> Question | None:
    # A schedule question is a line or two; a long text is something else, and is not worth mending.
    if len(text) > MAX_QUESTION or not is_question(text, strict):
        return None
    norm = normalize(text)
    words = set(norm.split())
    boundary = "start" if words & START else "end" if words & END else None

    events = _matches(norm, EVENTS)
    if "scoping-workshop" in events and "mvp-workshop" in events and "mvp" in words:
        events.remove("scoping-workshop")
    if events:
        return Question("event", events=tuple(events))
    phases = _matches(norm, PHASES)
    if phases:
        return Question("phase", phase=phases[0], boundary=boundary)
    if words & SESSION and (words & PREVIOUS or (words & LAST and words & PAST)):
        return Question("previous_session")
    if words & SESSION and words & LAST:
        return Question("last_session")
    # "the coaching program" is the program; "the next session of the program" is a session.
    if words & PROGRAM and not words & (SESSION - {"coaching"}):
        if boundary is not None:
            return Question("program", boundary=boundary)
        if words & COMING:
            return Question("program_next")
    day = _day(norm, today)
    if day is not None:
        return Question("day", day=day)
    month = _month(norm, today) or _month_from_today(norm, today)
    if month is not None:
        return Question("month", month=month)
    if words & WEEK:
        monday = today - timedelta(days=today.weekday())
        upcoming = bool(words & NEXT) or _has(norm, "que viene") or _has(norm, "que vem")
        return Question("week", week_start=monday + timedelta(days=7) if upcoming else monday)
    if any(re.search(p, norm) for p in CURRENT_PHASE):
        return Question("current_phase")
    # "How long until…?" with nothing else named asks about the next session.
    if words & (SESSION | NEXT) or any(re.search(p, norm) for p in (*HOW_LONG, *WHATS_NEXT)):
        return Question("next_session")
    return None


def _day(norm: str, today: date) -> date | None:
    if _has(norm, "day after tomorrow") or _has(norm, "pasado manana") or _has(norm, "depois de amanha"):
        return today + timedelta(days=2)
    words = norm.split()
    if {"today", "hoy", "hoje", "tonight"} & set(words):
        return today
    if {"tomorrow", "manana", "amanha"} & set(words):
        return today + timedelta(days=1)
    iso = re.search(r"\b(\d{4}) (\d{1,2}) (\d{1,2})\b", norm)
    if iso:
        try:
            return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        except ValueError:
            return None
    for i, word in enumerate(words):
        month = MONTHS.get(word)
        if month is None:
            continue
        before = words[i - 1] if i > 0 else ""
        if before == "de" and i > 1:
            before = words[i - 2]
        after = words[i + 1] if i + 1 < len(words) else ""
        number = before if _day_number(before) else after if _day_number(after) else None
        if number is not None:
            return _next_date(today, month, int(re.sub(r"\D", "", number)))
    for word in words:
        if word in WEEKDAYS and len(word) > 3:
            return today + timedelta(days=(WEEKDAYS[word] - today.weekday()) % 7)
    return None


def _day_number(word: str) -> bool:
    match = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th|o|a)?", word)
    return bool(match) and 1 <= int(match.group(1)) <= 31  # type: ignore[union-attr]


def _next_date(today: date, month: int, day: int) -> date | None:
    """The date with that month and day nearest ahead (or today); None if it does not exist."""
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= today - timedelta(days=31):  # a date just past is still meant as this year's
            return candidate
    return None


def _month(norm: str, today: date) -> date | None:
    words = norm.split()
    for i, word in enumerate(words):
        if word not in MONTHS or (len(word) == 3 and word in AMBIGUOUS_MONTHS):
            continue
        if word == "may" and (i == 0 or words[i - 1] not in {"in", "of", "during"}):
            continue
        month = MONTHS[word]
        year_match = re.search(r"\b(20\d\d)\b", norm)
        year = int(year_match.group(1)) if year_match else today.year
        if not year_match and month < today.month - 1:  # "in January" asked in November is next January
            year += 1
        return date(year, month, 1)
    return None


def _month_from_today(norm: str, today: date) -> date | None:
    if re.search(NEXT_SESSION, norm):
        return None
    first = today.replace(day=1)
    if re.search(NEXT_MONTH, norm):
        return (first + timedelta(days=31)).replace(day=1)
    if re.search(LAST_MONTH, norm):
        return (first - timedelta(days=1)).replace(day=1)
    if re.search(THIS_MONTH, norm):
        return first
    return None


def asks_schedule(text: str, strict: bool = False) -> bool:
    """Whether the text is a schedule question; what is asked does not depend on the day."""
    return understand(text, date(2000, 1, 3), strict) is not None
