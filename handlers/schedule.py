"""Schedule answers from the program calendar and the city's own sessions, in the city's time.

Nothing here invents a date: an event the program has not fixed is answered with what is known
(a month, a phase, a window), and phases announced by month are answered in months.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.i18n import Translator
from bot.messages import Reply
from bot.program import Event, Phase, Program, local, program_from
from bot.questions import Question, understand
from bot.request import Request
from bot.sessions import between, upcoming
from handlers.common import session_line
from handlers.help import UNKNOWN
from store.models import City
from store.repo import Store


def next_session(req: Request, store: Store) -> Reply:
    return _answer(req, store, Question("next_session"))


def ask(req: Request, store: Store) -> Reply:
    zone = req.cities[0].zone if req.cities else "UTC"
    today = req.now.astimezone(ZoneInfo(zone)).date()
    return _answer(req, store, understand(req.args, today) or Question("next_session"))


def _answer(req: Request, store: Store, question: Question) -> Reply:
    t = req.t
    program = program_from(store.program_document())
    city = req.cities[0] if req.cities else None
    zone = city.zone if city else "UTC"
    pathway = city.pathway if city else None
    today = req.now.astimezone(ZoneInfo(zone)).date()
    lines: list[str]
    if question.intent == "event":
        lines = [
            event_line(t, program, program.event(key), pathway, today)
            for key in question.events
            if program.event(key) is not None
        ]  # type: ignore[arg-type]
    elif question.intent == "phase":
        lines = _phase(t, program, question, pathway, today)
    elif question.intent == "current_phase":
        lines = _current_phase(t, program, pathway, today)
    elif not req.cities:
        lines = [t.gettext(UNKNOWN)]
    elif question.intent == "month":
        assert question.month is not None
        lines = _month(t, program, req.cities, store, question.month, pathway, req.now)
    elif question.intent == "week":
        assert question.week_start is not None
        lines = _week(t, program, req.cities, store, question.week_start, today, pathway, req.now)
    elif question.intent == "day":
        assert question.day is not None
        lines = _day(t, program, req.cities, store, question.day, pathway, req.now)
    else:
        lines = _next_sessions(t, req.cities, store, req.now)
    if not lines:
        lines = [t.gettext("That is not on the program calendar.")]
    return Reply(text="\n".join(lines))


def _months_between(first: date, second: date) -> int:
    return (second.year - first.year) * 12 + second.month - first.month


def _when(t: Translator, day: date, precision: str) -> str:
    return t.month(day) if precision == "month" else t.date(day)


def _relative(t: Translator, day: date, precision: str, today: date) -> str:
    if precision == "month":
        return t.months_away(_months_between(today, day))
    return t.days_from_today((day - today).days)


def _phase_span(t: Translator, phase: Phase) -> str:
    return f"{_when(t, phase.start, phase.precision)} – {_when(t, phase.end, phase.precision)}"


def _pathway_note(t: Translator, pathway: str | None, item_pathway: str | None) -> str:
    if item_pathway is None or item_pathway == (pathway or "implementation"):
        return ""
    if item_pathway == "implementation":
        return " " + t.gettext("(implementation pathway only)")
    return " " + t.gettext("(capacity-building pathway only)")


def event_line(t: Translator, program: Program, event: Event, pathway: str | None, today: date) -> str:
    _ = t.gettext
    name = local(event.name, t.language) + _pathway_note(t, pathway, event.pathway)
    if event.date is not None:
        return _("{name}: {date} ({relative}).").format(
            name=name, date=t.date(event.date), relative=t.days_from_today((event.date - today).days)
        )
    if event.week_of is not None:
        return _("{name}: the week of {date} ({relative}).").format(
            name=name, date=t.date(event.week_of), relative=t.days_from_today((event.week_of - today).days)
        )
    if event.start is not None and event.end is not None:
        values = {"name": name, "start": t.date(event.start), "end": t.date(event.end)}
        if today > event.end:
            return _("{name}: was between {start} and {end}.").format(**values)
        if today >= event.start:
            return _(
                "{name}: between {start} and {end} (open now); the exact days are agreed with your coach."
            ).format(**values)
        return _(
            "{name}: between {start} and {end} (opens {relative}); the exact days are agreed with your coach."
        ).format(relative=t.days_from_today((event.start - today).days), **values)
    if event.month_start is not None:
        month = t.month(event.month_start)
        if _months_between(today, event.month_start) < 0:
            return _("{name}: took place in {month}.").format(name=name, month=month)
        return _("{name}: {month}, exact dates not announced yet ({relative}).").format(
            name=name, month=month, relative=t.months_away(_months_between(today, event.month_start))
        )
    if event.phase is not None:
        phase = program.phase(event.phase)
        assert phase is not None
        values = {"name": name, "phase": local(phase.name, t.language), "span": _phase_span(t, phase)}
        if today > phase.end:
            return _("{name}: was during {phase} ({span}).").format(**values)
        return _("{name}: during {phase} ({span}); exact date not announced yet.").format(**values)
    return _("{name}: dates are set for each city; ask your coach.").format(name=name)


def _involves(t: Translator, phase: Phase) -> list[str]:
    if not phase.involves:
        return []
    return [t.gettext("It involves:")] + [f"• {local(line, t.language)}" for line in phase.involves]


def _phase(
    t: Translator, program: Program, question: Question, pathway: str | None, today: date
) -> list[str]:
    _ = t.gettext
    phase = program.phase(question.phase or "")
    if phase is None:
        return []
    name = local(phase.name, t.language) + _pathway_note(t, pathway, phase.pathway)
    if question.boundary in ("start", "end"):
        day = phase.start if question.boundary == "start" else phase.end
        values = {"phase": name, "when": _when(t, day, phase.precision)}
        past = today > day if phase.precision == "day" else _months_between(today, day) < 0
        if question.boundary == "start":
            template = _("{phase} started: {when}.") if past else _("{phase} starts: {when} ({relative}).")
        else:
            template = _("{phase} ended: {when}.") if past else _("{phase} ends: {when} ({relative}).")
        return [template.format(relative=_relative(t, day, phase.precision, today), **values)]
    return [_("{phase}: {span}.").format(phase=name, span=_phase_span(t, phase)), *_involves(t, phase)]


def _current_phase(t: Translator, program: Program, pathway: str | None, today: date) -> list[str]:
    _ = t.gettext
    phase = program.phase_on(today, pathway)
    lines: list[str]
    if phase is not None:
        lines = [
            _("You are in {phase} ({span}).").format(
                phase=local(phase.name, t.language), span=_phase_span(t, phase)
            ),
            *_involves(t, phase),
        ]
    else:
        lines = [program.phase_label(today, pathway, t.language) + "."]
    following = program.next_phase(today, pathway)
    if following is not None:
        lines.append(
            _("Next: {phase}, from {when}.").format(
                phase=local(following.name, t.language), when=_when(t, following.start, following.precision)
            )
        )
    return lines


def _local_range(city: City, first: date, last_exclusive: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(city.zone)
    return (
        datetime.combine(first, time(), tz),
        datetime.combine(last_exclusive, time(), tz),
    )


def _sessions_lines(
    t: Translator,
    cities: list[City],
    store: Store,
    first: date,
    last_exclusive: date,
    now: datetime,
    not_before: datetime | None = None,
) -> list[str]:
    lines = []
    for city in cities:
        assert city.id is not None
        start, end = _local_range(city, first, last_exclusive)
        if not_before is not None:
            start = max(start, not_before)
        prefix = f"{city.name} — " if len(cities) > 1 else ""
        for occurrence in between(store.sessions_of(city.id), city.zone, start, end):
            lines.append(f"• {prefix}{session_line(t, occurrence, city, now)}")
    return lines


def _after(t: Translator, cities: list[City], store: Store, day: date, now: datetime) -> list[str]:
    """The next session after `day`, for a reply that found none on it."""
    lines = []
    for city in cities:
        assert city.id is not None
        start, _end = _local_range(city, day, day)
        found = upcoming(store.sessions_of(city.id), city.zone, max(start, now), count=1)
        if found:
            lines.append(
                t.gettext("The next one: {session}").format(session=session_line(t, found[0], city, now))
            )
    return lines


def _program_events(
    t: Translator, program: Program, first: date, last: date, pathway: str | None, today: date
) -> list[str]:
    """Events that may fall between `first` and `last`, with what is known of their dates."""
    lines = []
    for event in program.events:
        span = event.span(program)
        if span is None or span[1] < first or span[0] > last or not event.applies_to(pathway):
            continue
        if event.phase is not None:
            continue  # "sometime in a phase" is no news for one day or week
        lines.append("• " + event_line(t, program, event, pathway, today))
    return lines


def _day(
    t: Translator,
    program: Program,
    cities: list[City],
    store: Store,
    day: date,
    pathway: str | None,
    now: datetime,
) -> list[str]:
    _ = t.gettext
    sessions = _sessions_lines(t, cities, store, day, day + timedelta(days=1), now)
    today = now.astimezone(ZoneInfo(cities[0].zone)).date()
    events = [line for line in _program_events(t, program, day, day, pathway, today) if line]
    if sessions:
        lines = [_("Sessions on {date}:").format(date=t.date(day)), *sessions]
    else:
        lines = [
            _("No coaching session on {date}.").format(date=t.date(day)),
            *_after(t, cities, store, day, now),
        ]
    return lines + events


def _week(
    t: Translator,
    program: Program,
    cities: list[City],
    store: Store,
    monday: date,
    today: date,
    pathway: str | None,
    now: datetime,
) -> list[str]:
    _ = t.gettext
    sunday = monday + timedelta(days=6)
    this_week = monday <= today <= sunday
    span = {"start": t.date(monday), "end": t.date(sunday)}
    title = _("This week ({start} – {end}):") if this_week else _("Week of {start} – {end}:")
    sessions = _sessions_lines(
        t, cities, store, monday, sunday + timedelta(days=1), now, now if this_week else None
    )
    lines = [title.format(**span)]
    if sessions:
        lines += sessions
    else:
        lines.append(
            _("No more coaching sessions this week.") if this_week else _("No coaching sessions that week.")
        )
        lines += _after(t, cities, store, sunday + timedelta(days=1), now)
    phase = program.phase_on(max(monday, today), pathway)
    if phase is not None:
        lines.append(_("Program: {phase}.").format(phase=local(phase.name, t.language)))
    return lines + _program_events(t, program, monday, sunday, pathway, today)


def _month(
    t: Translator,
    program: Program,
    cities: list[City],
    store: Store,
    first: date,
    pathway: str | None,
    now: datetime,
) -> list[str]:
    _ = t.gettext
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    last = following - timedelta(days=1)
    today = now.astimezone(ZoneInfo(cities[0].zone)).date()
    lines = [_("In {month}:").format(month=t.month(first))]
    for phase in program.phases_for(pathway):
        if phase.start > last or phase.end < first:
            continue
        name = local(phase.name, t.language)
        if phase.start >= first and phase.end <= last:
            lines.append("• " + _("{phase} (the whole phase)").format(phase=name))
        elif phase.start >= first:
            lines.append("• " + _("{phase} begins").format(phase=name))
        elif phase.end <= last:
            lines.append("• " + _("{phase} ends").format(phase=name))
        else:
            lines.append("• " + _("{phase} continues").format(phase=name))
    for event in program.events:
        span = event.span(program)
        if span is not None and span[0] <= last and span[1] >= first and event.applies_to(pathway):
            lines.append("• " + event_line(t, program, event, pathway, today))
    sessions = _sessions_lines(t, cities, store, first, following, now)
    if sessions:
        lines.append(_("Your coaching sessions ({count}):").format(count=len(sessions)))
        lines += sessions
    if len(lines) == 1:
        return [_("Nothing on the program calendar in {month}.").format(month=t.month(first))]
    return lines


def _next_sessions(t: Translator, cities: list[City], store: Store, now: datetime) -> list[str]:
    _ = t.gettext
    lines = []
    for city in cities:
        assert city.id is not None
        found = upcoming(store.sessions_of(city.id), city.zone, now, count=2)
        prefix = f"{city.name} — " if len(cities) > 1 else ""
        if not found:
            lines.append(
                prefix + _("No coaching session is scheduled for {city} yet.").format(city=city.name)
            )
            continue
        lines.append(
            prefix + _("Next session: {session}").format(session=session_line(t, found[0], city, now))
        )
        if len(found) > 1 and len(cities) == 1:
            lines.append(_("The one after: {session}").format(session=session_line(t, found[1], city, now)))
    return lines
