"""What is due now: session reminders, momentum nudges, weekly digests and stale-blocker notices.

A pass looks at the clock and the database only; everything it decides is written to the outbox
under a unique key (recipient, kind, occurrence), so planning the same thing twice — in a second
pass, a second server, after a restart — finds the key and adds nothing.

A pass does not walk every city. Each city and coach has a plan time (`plan_at`, see store/agenda.py):
the next instant at which something of theirs can fall due, which the pass sets after planning them
and the database clears when anything that could bring a message forward is written. A pass plans
the cities and coaches whose time has come, in batches of a fixed number of statements each.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from bot.calendar.program import Program
from bot.calendar.sessions import Occurrence, SessionLike, between, last_before, session_title, upcoming
from bot.core.i18n import Translator, translator
from bot.core.identity import platform_of
from bot.core.messages import SOON, Button, Reply
from handlers.status import DigestData, digest_of, digest_section
from store import agenda, views
from store.db import reader
from store.models import City, OutboxStatus, Person
from store.repo import Store, open_store

log = logging.getLogger("cda_bot.scheduler")

DIGEST_WEEKDAY, DIGEST_HOUR = 0, 8  # Monday 08:00 in the coach's zone
CITY_BATCH = 200  # cities planned per batch: a few milliseconds of writing each
COACH_BATCH = 100
# However far off a city's next message seems, it is looked at again within this: a plan time is an
# optimisation, and a bounded one costs a few cities a minute.
LONGEST_WAIT = timedelta(hours=12)


@dataclass
class PlanReport:
    planned: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@dataclass
class _Work:
    """What planning a batch decided: outbox rows to write, and when each city or coach is next due."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    plans: dict[int, datetime] = field(default_factory=dict)


def plan(store: Store, now: datetime) -> PlanReport:
    """One pass in the caller's transaction (a `tick`, a test)."""
    report = PlanReport()
    program = views.program(store)
    for ids in agenda.chunked(agenda.due_cities(store, now, now + LONGEST_WAIT), CITY_BATCH):
        _apply(store, City, _plan_cities(store, ids, program, now), report, None)
    sections = _Sections()
    for ids in agenda.chunked(agenda.due_coaches(store, now, now + LONGEST_WAIT), COACH_BATCH):
        _apply(store, Person, _plan_digests(store, ids, now, sections), report, None)
    return report


def plan_pass(engine: Engine, now: datetime) -> PlanReport:
    """One pass in short transactions: each batch is read without a lock and written in one short
    transaction, so an inbound message never waits long for SQLite's one writer."""
    report = PlanReport()
    read = reader(engine)
    with open_store(read) as store:
        program = views.program(store)
        cities = agenda.due_cities(store, now, now + LONGEST_WAIT)
        coaches = agenda.due_coaches(store, now, now + LONGEST_WAIT)
    # SQLite has one writer: batches small enough that each write is over in milliseconds. PostgreSQL
    # locks rows, not the database: there, fewer and larger batches save round trips.
    scale = 5 if engine.dialect.name == "postgresql" else 1
    for ids in agenda.chunked(cities, CITY_BATCH * scale):
        _batch(engine, City, ids, now, report, lambda store, ids: _plan_cities(store, ids, program, now))
    sections = _Sections()
    for ids in agenda.chunked(coaches, COACH_BATCH * scale):
        _batch(engine, Person, ids, now, report, lambda store, ids: _plan_digests(store, ids, now, sections))
    return report


def _batch(
    engine: Engine,
    model: Any,
    ids: list[int],
    now: datetime,
    report: PlanReport,
    decide: Callable[[Store, list[int]], _Work],
) -> None:
    with open_store(engine) as store:
        agenda.claim(store, model, ids, now)
    with open_store(reader(engine)) as store:
        work = decide(store, ids)
    # A digest of every city is large: a few of them per transaction.
    for rows in _by_size(work.rows):
        with open_store(engine) as store:
            _apply(store, model, _Work(rows, {}), report, now)
    with open_store(engine) as store:
        agenda.set_plans(store, model, work.plans, now)


def _by_size(rows: list[dict[str, Any]], most: int = 500_000, count: int = 250) -> list[list[dict[str, Any]]]:
    """Rows in groups small enough to write in a few milliseconds each (`most`: bytes, roughly)."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        # A reply's text is in its payload twice over, as its text and as its lines.
        weight = 2 * len(str(row["payload"].get("text", ""))) + 200
        if batches[-1] and (size + weight > most or len(batches[-1]) >= count):
            batches.append([])
            size = 0
        batches[-1].append(row)
        size += weight
    return [b for b in batches if b]


def _apply(store: Store, model: Any, work: _Work, report: PlanReport, claimed: datetime | None) -> None:
    written = agenda.insert_outbox(store, work.rows)
    for row in work.rows:
        if row["key"] not in written:
            continue
        if row["status"] == OutboxStatus.dropped:
            log.info("reminder dropped: %s", row["last_error"], extra={"key": row["key"]})
            report.dropped.append(row["key"])
        else:
            report.planned.append(row["key"])
    agenda.set_plans(store, model, work.plans, claimed)


def _row(
    key: str,
    recipient: str,
    kind: str,
    city_id: int | None,
    due: datetime,
    now: datetime,
    payload: dict[str, Any] | None = None,
    expires: datetime | None = None,
    dropped: str | None = None,
) -> dict[str, Any]:
    """One message to plan, or the record that its moment passed while nobody was running (`dropped`)."""
    return {
        "key": key,
        "recipient": recipient,
        "kind": kind,
        "city_id": city_id,
        "due_at": due,
        "next_attempt_at": now,
        "expires_at": expires,
        "created_at": now,
        "payload": payload or {},
        "status": OutboxStatus.dropped if dropped else OutboxStatus.pending,
        "last_error": dropped,
        "attempts": 0,
    }


# -- who hears about a city -------------------------------------------------------------------------------
def recipients(store: Store, city: City) -> list[str]:
    """A city is reached in its bound channels, and its members directly where none of those channels
    reaches them: on a platform the city has no channel on (WhatsApp has no groups at all). A person
    who said `stop` is left out."""
    assert city.id is not None
    return _recipients(views.audiences(store, [city.id])[city.id])


def _recipients(audience: views.Audience) -> list[str]:
    platforms = {platform_of(channel) for channel in audience.channels}
    members = [
        identity
        for identity, stopped_at in audience.members
        if stopped_at is None and platform_of(identity) not in platforms
    ]
    return audience.channels + members


# -- cities: reminders, nudges, stale blockers ------------------------------------------------------------
@dataclass
class _CityFacts:
    city: City
    targets: list[str]
    sessions: list[views.SessionRow]
    latest: views.LatestUpdate | None
    blockers: list[views.OpenBlocker]
    coaches: list[str]


def _plan_cities(store: Store, ids: list[int], program: Program, now: datetime) -> _Work:
    """Plan a batch of cities in a fixed number of statements: read what they need at once, decide
    each city's candidates, ask once which keys are taken, and build replies only for the rest."""
    cities = views.cities(store, ids)
    audiences = views.audiences(store, ids)
    sessions = views.sessions_by_city(store, ids)
    latest = views.latest_updates(store, ids)
    blockers = views.open_blockers(store, ids)
    coaches = views.coaches_by_city(store, ids)
    facts = [
        _CityFacts(
            city,
            _recipients(audiences[city.id]),  # type: ignore[index]
            sessions.get(city.id, []),  # type: ignore[arg-type]
            latest.get(city.id),  # type: ignore[arg-type]
            blockers.get(city.id, []),  # type: ignore[arg-type]
            coaches.get(city.id, []),  # type: ignore[arg-type]
        )
        for city in cities
    ]
    candidates: list[_Candidate] = []
    work = _Work()
    for fact in facts:
        assert fact.city.id is not None
        found, next_at = _reminders(fact, program, now)
        candidates += found
        found, nudge_at = _nudge(fact, now)
        candidates += found
        found, stale_at = _stale(fact, now)
        candidates += found
        work.plans[fact.city.id] = min(next_at, nudge_at, stale_at, now + LONGEST_WAIT)
    taken = agenda.existing_keys(store, [c.key for c in candidates])
    missing = [c for c in candidates if c.key not in taken]
    stale_texts = views.blocker_texts(store, sorted({c.blocker for c in missing if c.blocker is not None}))
    # One reply (and one payload) for every recipient of the same message.
    payloads: dict[tuple[Any, ...], dict[str, Any]] = {}
    for c in missing:
        if c.dropped is None and c.reply_of not in payloads:
            payloads[c.reply_of] = c.make_reply(stale_texts).model_dump(mode="json")
        payload = payloads[c.reply_of] if c.dropped is None else {}
        work.rows.append(
            _row(c.key, c.recipient, c.kind, c.city_id, c.due, now, payload, c.expires, c.dropped)
        )
    return work


@dataclass
class _Candidate:
    """A message a city may need now, decided before asking whether its key is taken; its reply is
    built only if it is not (`reply_of` names the reply, shared by every recipient)."""

    key: str
    recipient: str
    kind: str
    city_id: int | None
    due: datetime
    reply_of: tuple[Any, ...]
    build: Callable[[dict[int, Any]], Reply]
    expires: datetime | None = None
    dropped: str | None = None
    blocker: int | None = None

    def make_reply(self, blockers: dict[int, Any]) -> Reply:
        return self.build(blockers)


def _reminders(fact: _CityFacts, program: Program, now: datetime) -> tuple[list[_Candidate], datetime]:
    """Reminders of sessions whose reminder time has come (each until the next one is due, the last
    one until the session starts), and when the next reminder of any session falls due."""
    city = fact.city
    offsets = sorted({int(o) for o in city.reminder_offsets if int(o) > 0}, reverse=True)
    never = now + LONGEST_WAIT
    if not offsets or not fact.sessions or city.id is None:
        return [], never
    horizon = now + timedelta(minutes=offsets[0])
    window = between(
        fact.sessions, city.zone, now + timedelta(microseconds=1), horizon + timedelta(seconds=1)
    )
    found: list[_Candidate] = []
    next_at = never
    for occurrence in window:
        for index, offset in enumerate(offsets):
            due = occurrence.start - timedelta(minutes=offset)
            if due > now:
                next_at = min(next_at, due)
                continue
            # A reminder is useful until the next one is due (the last one, until the session starts).
            useful_until = (
                occurrence.start - timedelta(minutes=offsets[index + 1])
                if index + 1 < len(offsets)
                else occurrence.start
            )
            kind = f"reminder-{offset}"
            dropped = None
            if now >= useful_until:
                dropped = f"{kind} for session at {occurrence.start:%Y-%m-%d %H:%M}Z no longer useful"
            reply_of = ("reminder", city.id, occurrence.session_id, occurrence.start)
            for r in fact.targets:
                found.append(
                    _Candidate(
                        key=f"{r}|{kind}|{occurrence.session_id}@{occurrence.start:%Y-%m-%dT%H:%MZ}",
                        recipient=r,
                        kind=kind,
                        city_id=city.id,
                        due=due,
                        reply_of=reply_of,
                        build=lambda _b, o=occurrence: _reminder(fact, program, o),
                        expires=None if dropped else useful_until,
                        dropped=dropped,
                    )
                )
    # Past the window, the first session's earliest reminder (no later session has an earlier one).
    later = upcoming(fact.sessions, city.zone, horizon + timedelta(seconds=1), count=1)
    if later:
        next_at = min(next_at, max(later[0].start - timedelta(minutes=offsets[0]), now))
    return found, next_at


def _reminder(fact: _CityFacts, program: Program, occurrence: Occurrence) -> Reply:
    return reminder_text(
        translator(fact.city.language),
        fact.city,
        program,
        occurrence,
        fact.sessions,
        len(fact.blockers),
        fact.latest.created_at if fact.latest else None,
    )


def reminder_text(
    t: Translator,
    city: City,
    program: Program,
    occurrence: Occurrence,
    sessions: Sequence[SessionLike],
    open_blockers: int,
    last_update: datetime | None,
) -> Reply:
    _ = t.gettext
    assert city.id is not None
    local = occurrence.local_start(city.zone)
    session = session_title(occurrence.title, t)
    lines = [
        # `{soon}` stays in the text: the deliverer renders it when the reminder is sent.
        _("{title} starts {soon}: {date}, {time}.").format(
            title=session, soon=SOON, date=t.date(local.date()), time=t.time(local)
        ),
        _("Phase: {phase}").format(phase=program.phase_label(local.date(), city.pathway, t.language)),
        t.ngettext("{count} open blocker", "{count} open blockers", open_blockers).format(
            count=t.number(open_blockers)
        ),
    ]
    previous = last_before(sessions, city.zone, occurrence.start)
    if previous is not None and (last_update is None or last_update < previous.start):
        lines.append(_("No update since your last session: post one before you meet, e.g. `update: …`"))
    title = _("Reminder: {title}").format(title=session)
    return Reply(
        text=title + "\n" + "\n".join(lines),
        title=title,
        items=lines,
        about=[city.id],
        starts_at=occurrence.start,
        language=t.language,
    )


def in_quiet_hours(city: City, local: datetime) -> bool:
    return _quiet_hour(city, local.hour)


def _quiet_hour(city: City, hour: int) -> bool:
    start, end = city.quiet_start, city.quiet_end
    if start == end:
        return False
    if start > end:  # overnight, e.g. 20:00–08:00
        return hour >= start or hour < end
    return start <= hour < end


def _may_nudge(city: City, local: datetime) -> bool:
    return (
        local.weekday() in city.working_days
        and not in_quiet_hours(city, local)
        and local.hour >= city.nudge_hour
    )


def _first_nudge_time(city: City, after: datetime) -> datetime:
    """The first instant at or after `after` when a nudge may go out: a working day, from the nudge
    hour, outside quiet hours (a week ahead at most)."""
    tz = ZoneInfo(city.zone)
    local = after.astimezone(tz)
    if _may_nudge(city, local):
        return after
    hours = [h for h in range(city.nudge_hour, 24) if not _quiet_hour(city, h)]
    for days in range(8):
        day = local.date() + timedelta(days=days)
        if not hours or day.weekday() not in city.working_days:
            continue
        later = [h for h in hours if days > 0 or h > local.hour]
        if later:
            # An hour the clocks skip reads as the hour after it, when the nudge may go out too.
            return max(after, datetime.combine(day, time(later[0]), tz).astimezone(UTC))
    return after + LONGEST_WAIT


def _nudge(fact: _CityFacts, now: datetime) -> tuple[list[_Candidate], datetime]:
    city = fact.city
    never = now + LONGEST_WAIT
    if city.nudge_after_days <= 0 or city.id is None:
        return [], never
    since = fact.latest.created_at if fact.latest else city.created_at
    every = timedelta(days=city.nudge_after_days)
    quiet_days = (now - since).days
    stretch = quiet_days // city.nudge_after_days
    # The next stretch begins after (stretch + 1) × N quiet days.
    next_stretch = _first_nudge_time(city, since + every * (stretch + 1))
    if stretch < 1:
        return [], next_stretch
    local = now.astimezone(ZoneInfo(city.zone))
    if not _may_nudge(city, local):
        return [], min(_first_nudge_time(city, now), next_stretch)
    # One nudge per stretch of N quiet days: the first after N days, the next after 2N, and so on.
    occurrence = f"{city.slug}:{fact.latest.id if fact.latest else 0}:{stretch}"
    quiet_from = datetime.combine(local.date(), time(city.quiet_start % 24), ZoneInfo(city.zone))

    def build(_blockers: dict[int, Any]) -> Reply:
        t = translator(city.language)
        text = t.ngettext(
            "No update from {city} in {count} day. What moved this week? Reply `update: …`",
            "No update from {city} in {count} days. What moved this week? Reply `update: …`",
            quiet_days,
        ).format(city=city.name, count=t.number(quiet_days))
        return Reply(text=text)

    found = [
        _Candidate(
            key=f"{r}|nudge|{occurrence}",
            recipient=r,
            kind="nudge",
            city_id=city.id,
            due=now,
            reply_of=("nudge", city.id, occurrence),
            build=build,
            expires=max(quiet_from, now),
        )
        for r in fact.targets
    ]
    return found, next_stretch


def _stale(fact: _CityFacts, now: datetime) -> tuple[list[_Candidate], datetime]:
    """Coaches hear once of each blocker open longer than the city's limit."""
    city = fact.city
    never = now + LONGEST_WAIT
    if city.stale_blocker_days <= 0 or city.id is None:
        return [], never
    limit = timedelta(days=city.stale_blocker_days)
    found: list[_Candidate] = []
    next_at = never
    for blocker in fact.blockers:
        if now - blocker.opened_at < limit:
            next_at = min(next_at, blocker.opened_at + limit)
            continue
        days = (now - blocker.opened_at).days

        def build(texts: dict[int, Any], b: views.OpenBlocker = blocker, days: int = days) -> Reply:
            text = texts[b.id]
            return Reply(
                text=f"Blocker #{b.id} in {city.name} has been open for {days} days: {text}",
                title=f"Blocker #{b.id} open for {days} days — {city.name}",
                buttons=[
                    Button(
                        label="Resolve",
                        action="resolve_blocker",
                        value=str(b.id),
                        command=f"/cda resolve {b.id}",
                    )
                ],
            )

        for coach in fact.coaches:
            found.append(
                _Candidate(
                    key=f"{coach}|blocker_stale|{blocker.id}",
                    recipient=coach,
                    kind="blocker_stale",
                    city_id=city.id,
                    due=now,
                    reply_of=("stale", blocker.id),
                    build=build,
                    blocker=blocker.id,
                )
            )
    return found, next_at


# -- coaches: the weekly digest ---------------------------------------------------------------------------
def coach_zone(store: Store, coach: Person) -> str:
    if coach.zone:
        return coach.zone
    cities = store.cities(store.coached_city_ids(coach))
    return cities[0].zone if cities else "UTC"


def _next_digest(local: datetime) -> datetime:
    """The next Monday 08:00 of the coach's clock after `local` (today's, if it is Monday before 08:00)."""
    days = (DIGEST_WEEKDAY - local.weekday()) % 7
    if days == 0 and local.hour >= DIGEST_HOUR:
        days = 7
    monday: date = local.date() + timedelta(days=days)
    return datetime.combine(monday, time(DIGEST_HOUR), local.tzinfo)


@dataclass
class _Sections:
    """What a pass reads once for every coach's digest: each city's part of the digest, its figures,
    and the cities themselves."""

    text: dict[int, str] = field(default_factory=dict)
    figures: dict[int, views.CityFigures] = field(default_factory=dict)
    places: dict[int, views.Place] = field(default_factory=dict)
    everything: list[views.Place] | None = None

    def all_cities(self, store: Store) -> list[views.Place]:
        if self.everything is None:
            self.everything = views.all_places(store)
            self.places.update({c.id: c for c in self.everything})
        return self.everything

    def of(self, store: Store, ids: list[int]) -> list[views.Place]:
        unknown = [i for i in ids if i not in self.places]
        self.places.update({c.id: c for c in views.places(store, unknown)})
        return sorted((self.places[i] for i in ids if i in self.places), key=lambda c: (c.name, c.id))


def _plan_digests(store: Store, ids: list[int], now: datetime, sections: _Sections) -> _Work:
    """The week's digest of each coach whose Monday 08:00 has come; the digest of a city is written
    once a pass, whichever coaches' digests show it."""
    work = _Work()
    coaches = [c for c in views.people(store, ids) if c.id is not None]
    linked = views.coached_cities(store, [c.id for c in coaches])  # type: ignore[misc]
    # A coach without a zone of their own keeps the zone of their first city by name.
    places = views.names_and_zones(store, sorted({i for ids in linked.values() for i in ids}))
    first_of_all = views.first_city_zone(store) if any(c.all_cities for c in coaches) else None
    due: list[tuple[Person, str, datetime]] = []
    for coach in coaches:
        assert coach.id is not None
        mine = sorted((places[i] for i in linked.get(coach.id, []) if i in places), key=lambda p: p[:2])
        fallback = first_of_all if coach.all_cities else (mine[0][2] if mine else None)
        local = now.astimezone(ZoneInfo(coach.zone or fallback or "UTC"))
        work.plans[coach.id] = min(_next_digest(local), now + LONGEST_WAIT)
        if local.weekday() != DIGEST_WEEKDAY or local.hour < DIGEST_HOUR:
            continue
        if not (coach.all_cities and first_of_all) and not mine:
            continue  # no city to tell about
        year, week, _day = local.isocalendar()
        due.append((coach, f"{coach.identity}|digest|{year}-W{week:02d}", local))
    taken = agenda.existing_keys(store, [key for _c, key, _l in due])
    due = [d for d in due if d[1] not in taken]
    if not due:
        return work
    t = translator("en")
    sections.of(store, sorted({i for coach, _k, _l in due if not coach.all_cities for i in linked[coach.id]}))  # type: ignore[index]
    shown = {
        coach.id: sections.all_cities(store) if coach.all_cities else sections.of(store, linked[coach.id])  # type: ignore[index]
        for coach, _k, _l in due
    }
    needed = {c.id: c for cities in shown.values() for c in cities if c.id not in sections.text}
    if needed:
        data = DigestData.read(store, list(needed.values()), now)
        sections.figures.update(data.figures)
        for city in needed.values():
            sections.text[city.id] = digest_section(t, data, city, now)
    data = DigestData(sections.figures, {}, {}, {})
    for coach, key, local in due:
        reply = digest_of(t, data, shown[coach.id], now, section=lambda c: sections.text[c.id])  # type: ignore[index]
        when = datetime.combine(local.date(), time(DIGEST_HOUR), local.tzinfo)
        payload = reply.model_dump(mode="json")
        work.rows.append(
            _row(key, coach.identity, "digest", None, when, now, payload, when + timedelta(days=1))
        )
    return work
    t = translator("en")
    needed = {c.id: c for _coach, cities, _k, _l in due for c in cities if c.id not in sections.text}
    if needed:
        data = DigestData.read(store, list(needed.values()), now)
        sections.figures.update(data.figures)
        for city in needed.values():
            sections.text[city.id] = digest_section(t, data, city, now)
    for coach, cities, key, local in due:
        data = DigestData(sections.figures, {}, {}, {})
        reply = digest_of(t, data, cities, now, section=lambda c: sections.text[c.id])  # type: ignore[index]
        when = datetime.combine(local.date(), time(DIGEST_HOUR), local.tzinfo)
        payload = reply.model_dump(mode="json")
        work.rows.append(
            _row(key, coach.identity, "digest", None, when, now, payload, when + timedelta(days=1))
        )
    return work
