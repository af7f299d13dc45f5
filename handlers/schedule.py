"""Schedule answers from the program calendar and the city's own sessions, in the city's time.

Nothing here invents a date: an event the program has not fixed is answered with what is known
(a month, a phase, a window), and phases announced by month are answered in months. A line that shows
a city's own schedule (its sessions, its phase) names the city: a coach may ask about any of theirs.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.calendar.program import Event, Phase, Program, local, next_month, program_from
from bot.calendar.questions import Question, understand
from bot.calendar.sessions import between, last_before, upcoming
from bot.core.i18n import Translator
from bot.core.messages import Reply
from bot.core.request import Request, SpeakerRole
from handlers.common import session_line
from handlers.help import NO_CITY_COACHED, UNKNOWN
from store.models import City, CoachingSession
from store.repo import Store


@dataclass(frozen=True)
class Ask:
    """What every answer is worked out from: the asker's cities, language, calendar and day."""

    t: Translator
    program: Program
    store: Store
    cities: list[City]
    now: datetime
    today: date  # in the zone of the asker's (first) city
    pathway: str | None
    cityless: str  # what an asker with no city is told about sessions (a text to translate)


def next_session(req: Request, store: Store) -> Reply:
    return _answer(_ask(req, store), Question("next_session"))


def ask(req: Request, store: Store) -> Reply:
    context = _ask(req, store)
    return _answer(context, understand(req.args, context.today) or Question("next_session"))


def _ask(req: Request, store: Store) -> Ask:
    city = req.cities[0] if req.cities else None
    today = req.now.astimezone(ZoneInfo(city.zone if city else "UTC")).date()
    program = program_from(store.program_document())
    # Only a guest or a coach without cities has none; a coach is on the roster already.
    cityless = UNKNOWN if req.speaker.role == SpeakerRole.guest else NO_CITY_COACHED
    return Ask(req.t, program, store, req.cities, req.now, today, city.pathway if city else None, cityless)


def _answer(a: Ask, question: Question) -> Reply:
    lines: list[str]
    if question.intent == "event":
        events = [a.program.event(key) for key in question.events]
        lines = [event_line(a, event) for event in events if event is not None]
    elif question.intent == "phase":
        lines = _phase(a, question)
    elif question.intent == "current_phase":
        lines = _current_phase(a)
    elif question.intent == "program":
        lines = _program_bound(a, question.boundary)
    elif question.intent == "program_next":
        lines = _program_next(a)
    elif not a.cities:
        lines = [a.t.gettext(a.cityless)]
    elif question.intent == "last_session":
        lines = _final_sessions(a)
    elif question.intent == "previous_session":
        lines = _previous_sessions(a)
    elif question.month is not None:
        lines = _month(a, question.month)
    elif question.week_start is not None:
        lines = _week(a, question.week_start)
    elif question.day is not None:
        lines = _day(a, question.day)
    else:
        lines = _next_sessions(a)
    if not lines:
        lines = [a.t.gettext("That is not on the program calendar.")]
    return Reply(text="\n".join(lines))


def _months_between(first: date, second: date) -> int:
    return (second.year - first.year) * 12 + second.month - first.month


def _when(t: Translator, day: date, precision: str) -> str:
    return t.month(day) if precision == "month" else t.date(day)


def _relative(a: Ask, day: date, precision: str) -> str:
    if precision == "month":
        return a.t.months_away(_months_between(a.today, day))
    return a.t.days_from_today((day - a.today).days)


def _is_past(a: Ask, day: date, precision: str) -> bool:
    return a.today > day if precision == "day" else _months_between(a.today, day) < 0


def _whose(city: City, line: str) -> str:
    return f"{city.name} — {line}"


def _headed(a: Ask, line: str) -> str:
    """The first line of an answer about one city names it; with several, each line names its own."""
    return _whose(a.cities[0], line) if len(a.cities) == 1 else line


def _phase_span(t: Translator, phase: Phase) -> str:
    return f"{_when(t, phase.start, phase.precision)} – {_when(t, phase.end, phase.precision)}"


def _pathway_note(a: Ask, item_pathway: str | None) -> str:
    if item_pathway is None or item_pathway == (a.pathway or "implementation"):
        return ""
    if item_pathway == "implementation":
        return " " + a.t.gettext("(implementation pathway only)")
    return " " + a.t.gettext("(capacity-building pathway only)")


def event_line(a: Ask, event: Event) -> str:
    t, today = a.t, a.today
    _ = t.gettext
    name = local(event.name, t.language) + _pathway_note(a, event.pathway)
    if event.date is not None:
        return _("{name}: {date} ({relative}).").format(
            name=name, date=t.date(event.date), relative=_relative(a, event.date, "day")
        )
    if event.week_of is not None:
        return _("{name}: the week of {date} ({relative}).").format(
            name=name, date=t.date(event.week_of), relative=_relative(a, event.week_of, "day")
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
        ).format(relative=_relative(a, event.start, "day"), **values)
    if event.month_start is not None:
        month = t.month(event.month_start)
        if _months_between(today, event.month_start) < 0:
            return _("{name}: took place in {month}.").format(name=name, month=month)
        return _("{name}: {month}, exact dates not announced yet ({relative}).").format(
            name=name, month=month, relative=_relative(a, event.month_start, "month")
        )
    if event.phase is not None:
        phase = a.program.phase(event.phase)
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


def _phase(a: Ask, question: Question) -> list[str]:
    _ = a.t.gettext
    phase = a.program.phase(question.phase or "")
    if phase is None:
        return []
    name = local(phase.name, a.t.language) + _pathway_note(a, phase.pathway)
    if question.boundary in ("start", "end"):
        day = phase.start if question.boundary == "start" else phase.end
        values = {"phase": name, "when": _when(a.t, day, phase.precision)}
        past = _is_past(a, day, phase.precision)
        if question.boundary == "start":
            template = _("{phase} started: {when}.") if past else _("{phase} starts: {when} ({relative}).")
        else:
            template = _("{phase} ended: {when}.") if past else _("{phase} ends: {when} ({relative}).")
        return [template.format(relative=_relative(a, day, phase.precision), **values)]
    return [_("{phase}: {span}.").format(phase=name, span=_phase_span(a.t, phase)), *_involves(a.t, phase)]


def _current_phase(a: Ask) -> list[str]:
    t, _ = a.t, a.t.gettext
    if len(a.cities) > 1:
        return [_whose(city, _phase_of(a, city)) for city in a.cities]
    phase = a.program.phase_on(a.today, a.pathway)
    lines: list[str]
    if phase is not None:
        lines = [
            _("You are in {phase} ({span}).").format(
                phase=local(phase.name, t.language), span=_phase_span(t, phase)
            ),
            *_involves(t, phase),
        ]
    else:
        lines = [a.program.phase_label(a.today, a.pathway, t.language) + "."]
    following = a.program.next_phase(a.today, a.pathway)
    if following is not None:
        lines.append(
            _("Next: {phase}, from {when}.").format(
                phase=local(following.name, t.language), when=_when(t, following.start, following.precision)
            )
        )
    return [_headed(a, lines[0]), *lines[1:]] if a.cities else lines


def _phase_of(a: Ask, city: City) -> str:
    """`Learning Loop 2: Solution Build (November 2026 – January 2027)`, on the city's own today."""
    today = a.now.astimezone(ZoneInfo(city.zone)).date()
    phase = a.program.phase_on(today, city.pathway)
    if phase is None:
        return a.program.phase_label(today, city.pathway, a.t.language)
    return f"{local(phase.name, a.t.language)} ({_phase_span(a.t, phase)})"


def _program_bounds(a: Ask) -> tuple[tuple[date, str], tuple[date, str]] | None:
    """When the program starts and ends on the asker's pathway, each as precisely as the calendar has
    it (a day, or a month): its phases, and events fixed to a day or a month outside them."""
    starts: list[tuple[date, str]] = []
    ends: list[tuple[date, str]] = []
    for phase in a.program.phases_for(a.pathway):
        starts.append((phase.start, phase.precision))
        ends.append((phase.end, phase.precision))
    for event in a.program.events:
        span = event.span(a.program)
        if span is None or not event.applies_to(a.pathway) or (event.date is None and event.month is None):
            continue
        precision = "day" if event.date is not None else "month"
        starts.append((span[0], precision))
        ends.append((span[1], precision))
    if not starts:
        return None
    return min(starts), max(ends)


def _program_bound(a: Ask, boundary: str | None) -> list[str]:
    _ = a.t.gettext
    bounds = _program_bounds(a)
    if bounds is None:
        return []
    day, precision = bounds[0] if boundary == "start" else bounds[1]
    values = {"when": _when(a.t, day, precision), "relative": _relative(a, day, precision)}
    past = _is_past(a, day, precision)
    if boundary == "start":
        template = (
            _("The program started: {when}.") if past else _("The program starts: {when} ({relative}).")
        )
    else:
        template = _("The program ended: {when}.") if past else _("The program ends: {when} ({relative}).")
    return [template.format(**values)]


def _program_next(a: Ask) -> list[str]:
    """What comes next, up to the end of the next phase: events not over yet (with what is known of
    their dates) and the next phase; past the last phase, when the program ends."""
    t, _ = a.t, a.t.gettext
    following = a.program.next_phase(a.today, a.pathway)
    coming: list[tuple[date, str]] = []
    for event in a.program.events:
        span = event.span(a.program)
        if span is None or span[1] < a.today or not event.applies_to(a.pathway):
            continue
        if following is None or span[0] <= following.end:
            coming.append((span[0], event_line(a, event)))
    if following is not None:
        starts = _("{phase} starts: {when} ({relative}).").format(
            phase=local(following.name, t.language),
            when=_when(t, following.start, following.precision),
            relative=_relative(a, following.start, following.precision),
        )
        coming.append((following.start, starts))
    lines = [line for _day, line in sorted(coming, key=lambda item: item[0])]
    if following is None and a.program.phase_on(a.today, a.pathway) is not None:
        lines += _program_bound(a, "end")
    if not lines:
        return [_("Nothing more is planned on the program calendar.")]
    return [_("Next in the program:"), *(f"• {line}" for line in lines)]


def _local_midnight(city: City, day: date) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(city.zone))


def _sessions_lines(
    a: Ask, first: date, last_exclusive: date, not_before: datetime | None = None
) -> list[str]:
    """Each city's sessions from `first` up to `last_exclusive` (local days), one line each."""
    lines = []
    for city in a.cities:
        assert city.id is not None
        start = _local_midnight(city, first)
        if not_before is not None:
            start = max(start, not_before)
        prefix = f"{city.name} — " if len(a.cities) > 1 else ""  # one city: the answer's title names it
        for occurrence in between(
            a.store.sessions_of(city.id), city.zone, start, _local_midnight(city, last_exclusive)
        ):
            lines.append(f"• {prefix}{session_line(a.t, occurrence, city, a.now)}")
    return lines


def _after(a: Ask, day: date) -> list[str]:
    """The next session from `day` on, for a reply that found none where it looked."""
    lines = []
    for city in a.cities:
        assert city.id is not None
        start = max(_local_midnight(city, day), a.now)
        found = upcoming(a.store.sessions_of(city.id), city.zone, start, count=1)
        if found:
            session = session_line(a.t, found[0], city, a.now)
            line = a.t.gettext("The next one: {session}").format(session=session)
            lines.append(_whose(city, line) if len(a.cities) > 1 else line)
    return lines


def _program_events(a: Ask, first: date, last: date, with_phase_bound: bool = False) -> list[str]:
    """Events that may fall between `first` and `last`, with what is known of their dates. An event
    known only to happen "sometime in a phase" is news for a month, not for a day or a week."""
    lines = []
    for event in a.program.events:
        span = event.span(a.program)
        if span is None or span[1] < first or span[0] > last or not event.applies_to(a.pathway):
            continue
        if event.phase is not None and not with_phase_bound:
            continue
        lines.append("• " + event_line(a, event))
    return lines


def _day(a: Ask, day: date) -> list[str]:
    _ = a.t.gettext
    sessions = _sessions_lines(a, day, day + timedelta(days=1))
    if sessions:
        lines = [_headed(a, _("Sessions on {date}:").format(date=a.t.date(day))), *sessions]
    else:
        lines = [_headed(a, _("No coaching session on {date}.").format(date=a.t.date(day))), *_after(a, day)]
    return lines + _program_events(a, day, day)


def _week(a: Ask, monday: date) -> list[str]:
    _ = a.t.gettext
    sunday = monday + timedelta(days=6)
    this_week = monday <= a.today <= sunday
    span = {"start": a.t.date(monday), "end": a.t.date(sunday)}
    title = _("This week ({start} – {end}):") if this_week else _("Week of {start} – {end}:")
    lines = [_headed(a, title.format(**span))]
    sessions = _sessions_lines(a, monday, sunday + timedelta(days=1), a.now if this_week else None)
    if sessions:
        lines += sessions
    else:
        lines.append(
            _("No more coaching sessions this week.") if this_week else _("No coaching sessions that week.")
        )
        lines += _after(a, sunday + timedelta(days=1))
    phase = a.program.phase_on(max(monday, a.today), a.pathway)
    if phase is not None:
        lines.append(_("Program: {phase}.").format(phase=local(phase.name, a.t.language)))
    return lines + _program_events(a, monday, sunday)


def _month(a: Ask, first: date) -> list[str]:
    _ = a.t.gettext
    following = next_month(first)
    last = following - timedelta(days=1)
    lines = [_headed(a, _("In {month}:").format(month=a.t.month(first)))]
    for phase in a.program.phases_for(a.pathway):
        if phase.start > last or phase.end < first:
            continue
        name = local(phase.name, a.t.language)
        if phase.start >= first and phase.end <= last:
            lines.append("• " + _("{phase} (the whole phase)").format(phase=name))
        elif phase.start >= first:
            lines.append("• " + _("{phase} begins").format(phase=name))
        elif phase.end <= last:
            lines.append("• " + _("{phase} ends").format(phase=name))
        else:
            lines.append("• " + _("{phase} continues").format(phase=name))
    lines += _program_events(a, first, last, with_phase_bound=True)
    sessions = _sessions_lines(a, first, following)
    if sessions:
        lines.append(_("Your coaching sessions ({count}):").format(count=a.t.number(len(sessions))))
        lines += sessions
    if len(lines) == 1:
        return [_headed(a, _("Nothing on the program calendar in {month}.").format(month=a.t.month(first)))]
    return lines


def _next_sessions(a: Ask) -> list[str]:
    _ = a.t.gettext
    lines = []
    for city in a.cities:
        assert city.id is not None
        found = upcoming(a.store.sessions_of(city.id), city.zone, a.now, count=2)
        if not found:
            lines.append(_("No coaching session is scheduled for {city} yet.").format(city=city.name))
            continue
        session = session_line(a.t, found[0], city, a.now)
        lines.append(_whose(city, _("Next session: {session}").format(session=session)))
        if len(found) > 1 and len(a.cities) == 1:
            lines.append(
                _("The one after: {session}").format(session=session_line(a.t, found[1], city, a.now))
            )
    return lines


# Far enough for any series with an end; one without an end has no last session.
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


def _endless(session: CoachingSession) -> bool:
    if not session.rrule or session.until_local is not None:
        return False
    parts = {part.split("=", 1)[0].strip().upper() for part in session.rrule.split(";")}
    return not parts & {"UNTIL", "COUNT"}


def _final_sessions(a: Ask) -> list[str]:
    """The last session of each city's series, past or to come: never the next one."""
    _ = a.t.gettext
    lines = []
    for city in a.cities:
        assert city.id is not None
        sessions = a.store.sessions_of(city.id)
        if any(_endless(session) for session in sessions):
            lines.append(
                _whose(city, _("The sessions repeat with no end date set, so there is no last one yet."))
            )
            continue
        last = last_before(sessions, city.zone, _END_OF_TIME)
        if last is None:
            lines.append(_("No coaching session is scheduled for {city} yet.").format(city=city.name))
            continue
        session = session_line(a.t, last, city, a.now)
        lines.append(_whose(city, _("Last session: {session}").format(session=session)))
    return lines


def _previous_sessions(a: Ask) -> list[str]:
    """The latest session held: "when was our last session?"."""
    _ = a.t.gettext
    lines = []
    for city in a.cities:
        assert city.id is not None
        held = last_before(a.store.sessions_of(city.id), city.zone, a.now)
        if held is None:
            lines.append(_("{city} has had no coaching session yet.").format(city=city.name))
            continue
        session = session_line(a.t, held, city, a.now)
        lines.append(_whose(city, _("Most recent session: {session}").format(session=session)))
    return lines
