"""What is due now: session reminders, momentum nudges, weekly digests and stale-blocker notices.

A pass looks at the clock and the database only; everything it decides is written to the outbox
under a unique key (recipient, kind, occurrence), so planning the same thing twice — in a second
pass, a second server, after a restart — finds the key and adds nothing.

A pass does not walk every city. Each city and coach has a plan time (`plan_at`, see store/agenda.py):
the next instant at which something of theirs can fall due, which the pass sets after planning them
and the database clears when anything that could bring a message forward is written. A pass plans
the cities and coaches whose time has come, in batches of a fixed number of statements each.
"""

import gc
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from bot.calendar.program import Program
from bot.calendar.sessions import Occurrence, between, last_before, session_title, upcoming
from bot.core.i18n import Translator, translator
from bot.core.identity import platform_of
from bot.core.messages import SOON, Button, Reply
from handlers.status import DigestData, digest_of, digest_section
from store import agenda, bulk, views
from store.agenda import CityRow, OutboxRow
from store.db import reader
from store.models import REMINDER_KIND, STALE_KIND, City, OutboxStatus, Person, reminder_key, stale_key
from store.repo import Store, open_store

log = logging.getLogger("cda_bot.scheduler")

DIGEST_WEEKDAY, DIGEST_HOUR = 0, 8  # Monday 08:00 in the coach's zone
CITY_BATCH = 500  # cities planned per batch
COACH_BATCH = 250
CLAIM_BATCH = 1000  # cities or coaches marked in one transaction: a few milliseconds on SQLite
# However far off a city's next message seems, it is looked at again within this: a plan time is an
# optimisation, and a bounded one costs a few cities a minute.
LONGEST_WAIT = timedelta(hours=12)
_PENDING, _DROPPED = OutboxStatus.pending.value, OutboxStatus.dropped.value


@dataclass
class PlanReport:
    planned: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@dataclass
class _Work:
    """What planning a batch decided: outbox rows to write, and when each city or coach is next due."""

    rows: list[OutboxRow] = field(default_factory=list)
    plans: dict[int, datetime] = field(default_factory=dict)


def plan(store: Store, now: datetime) -> PlanReport:
    """One pass in the caller's transaction (a `tick`, a test)."""
    report = PlanReport()
    run = _Pass(now, views.program(store), store.session.get_bind().dialect.name == "postgresql")
    for ids in agenda.chunked(agenda.due_cities(store, now, now + LONGEST_WAIT), CITY_BATCH):
        _apply(store, City, _plan_cities(store, ids, run), report, None)
    for ids in agenda.chunked(agenda.due_coaches(store, now, now + LONGEST_WAIT), COACH_BATCH):
        _apply(store, Person, _plan_digests(store, ids, run), report, None)
    return report


def plan_pass(engine: Engine, now: datetime, turn: agenda.Turn = nullcontext) -> PlanReport:
    """One pass in short transactions: each batch is read without a lock and written in short
    transactions, each in a `turn` of the process's writers, so an inbound message never waits long
    for SQLite's one writer."""
    with _no_cycle_collection():
        return _plan_pass(engine, now, turn)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """A pass makes tens of thousands of objects that live until it ends: Python's cycle collector
    would walk them (and everything else in the process) again and again, a fifth of a large pass.
    Reference counting still frees what the pass drops; the cycles made meanwhile, by this thread or
    any other, are collected once it is over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan_pass(engine: Engine, now: datetime, turn: agenda.Turn) -> PlanReport:
    report = PlanReport()
    read = reader(engine)
    postgres = engine.dialect.name == "postgresql"
    with open_store(read) as store:
        run = _Pass(now, views.program(store), postgres)
        cities = agenda.due_cities(store, now, now + LONGEST_WAIT)
        coaches = agenda.due_coaches(store, now, now + LONGEST_WAIT)
    if not cities and not coaches:
        return report  # the pass of most minutes
    # A batch is read and decided at once. PostgreSQL takes larger ones: fewer round trips, and its
    # writes overlap the deciding of the next batch.
    scale = 2 if postgres else 1

    def decided(model: Any, ids: list[int], size: int) -> Iterator[_Work]:
        # What is due is claimed first, in a few transactions rather than one a batch.
        for chunk in agenda.chunked(ids, max(len(ids), 1) if postgres else CLAIM_BATCH):
            with turn(), open_store(engine) as store:
                agenda.claim(store, model, chunk, now)
        for batch in agenda.chunked(ids, size):
            with open_store(read) as store:
                work = _plan_cities(store, batch, run) if model is City else _plan_digests(store, batch, run)
            yield work  # with the reading transaction over

    def write(model: Any, work: _Work) -> Callable[[], None]:
        return lambda: _write(engine, model, work, now, report, turn)

    with _Writer(threaded=postgres) as writer:
        if not postgres:
            for work in decided(City, cities, CITY_BATCH):
                writer.submit(write(City, work))
            for work in decided(Person, coaches, COACH_BATCH):
                writer.submit(write(Person, work))
            return report
        # The digests are decided in a second thread meanwhile (what one thread waits for from the
        # server, the other spends in Python), and written after the cities' messages, as always.
        with ThreadPoolExecutor(1, thread_name_prefix="scheduler-digests") as pool:
            digests = pool.submit(lambda: list(decided(Person, coaches, COACH_BATCH * scale)))
            for work in decided(City, cities, CITY_BATCH * scale):
                writer.submit(write(City, work))
            for work in digests.result():
                writer.submit(write(Person, work))
    return report


class _Writer:
    """On PostgreSQL, writes each batch, in order, in a thread of its own while the pass decides the
    next one: the server's share of the work overlaps Python's. Leaving the block waits for every
    write and raises the first that failed. SQLite writes in the pass's own thread: there the writing
    is Python's work too, and a thread that waits for Python's lock while it holds the database's
    would hold that one for longer."""

    def __init__(self, threaded: bool) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=2)
        self._failed: BaseException | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="scheduler-writes", daemon=True)

    def __enter__(self) -> "_Writer":
        if self._thread is not None:
            self._thread.start()
        return self

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            job()
            return
        if self._failed is not None:
            raise self._failed
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._failed is None:  # after a failure, nothing more is written
                try:
                    job()
                except BaseException as error:  # raised in the pass's own thread
                    self._failed = error

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join()
        if self._failed is not None and kind is None:
            raise self._failed


def _write(
    engine: Engine, model: Any, work: _Work, now: datetime, report: PlanReport, turn: agenda.Turn
) -> None:
    # On SQLite up to a thousand rows per transaction, a few milliseconds (a digest of every city is
    # large: alone); the plans go with the last of them.
    postgres = engine.dialect.name == "postgresql"
    groups = _by_size(work.rows, 50_000_000, 20_000) if postgres else _by_size(work.rows)
    for index, rows in enumerate(groups or [[]]):
        last = index == len(groups) - 1 or not groups
        with turn(), open_store(engine) as store:
            _apply(store, model, _Work(rows, work.plans if last else {}), report, now)


def _by_size(rows: list[OutboxRow], most: int = 1_000_000, count: int = 1000) -> list[list[OutboxRow]]:
    """Rows in groups small enough to write in a few milliseconds each (`most`: bytes, roughly)."""
    batches: list[list[OutboxRow]] = [[]]
    size = 0
    for row in rows:
        weight = len(row[4]) + 200  # the payload's JSON, and the rest
        if batches[-1] and (size + weight > most or len(batches[-1]) >= count):
            batches.append([])
            size = 0
        batches[-1].append(row)
        size += weight
    return [b for b in batches if b]


def _apply(store: Store, model: Any, work: _Work, report: PlanReport, claimed: datetime | None) -> None:
    written = agenda.insert_outbox(store, work.rows)
    for row in work.rows:
        key = row[0]
        if key not in written:
            continue
        if row[5] == _DROPPED:
            log.info("reminder dropped: %s", row[10], extra={"key": key})
            report.dropped.append(key)
        else:
            report.planned.append(key)
    agenda.set_plans(store, model, work.plans, claimed)


class _Pass:
    """What a pass works out once for every city it plans: instants as the database takes them, the
    reminders of each distinct series of sessions, each distinct reminder text. It lives for one pass,
    so nothing kept in it can go stale."""

    def __init__(self, now: datetime, program: Program, postgres: bool) -> None:
        self.now = now
        self.program = program
        self.postgres = postgres
        self._instants: dict[datetime, Any] = {}
        self._schedules: dict[tuple[Any, ...], _Schedule] = {}
        self._reminders: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.created = self.instant(now)
        # Payloads are made from these, as `Reply(…).model_dump(mode="json")` makes them: the plain
        # reply (`Reply(text=…)`), and the button that resolves a blocker.
        self.plain: dict[str, Any] = Reply(text="").model_dump(mode="json")
        resolve = Button(label="Resolve", action="resolve_blocker", value="", command="")
        self.button: dict[str, Any] = resolve.model_dump(mode="json")
        self.sections = _Sections()
        self._everywhere: set[str] | None = None
        self._nudging: dict[tuple[Any, ...], tuple[bool, datetime, datetime | None]] = {}
        self.first_day = program.first_day
        self.last_day = program.last_day
        self._midnights: dict[tuple[date, str], datetime] = {}

    def program_begins(self, zone: str) -> datetime | None:
        """When the program begins in `zone`: the midnight that starts its first day (None: the calendar
        dates nothing). No nudge or digest is planned before it, and a city's quiet days count from it."""
        return None if self.first_day is None else self._midnight(self.first_day, zone)

    def program_over(self, zone: str) -> datetime | None:
        """When the program is over in `zone`: the midnight that ends its last day (None: the calendar
        gives no end). No nudge or digest is planned from then on; a new calendar clears every plan
        (migration 0012), so the next cohort's dates are followed from the next pass."""
        return None if self.last_day is None else self._midnight(self.last_day + timedelta(days=1), zone)

    def _midnight(self, day: date, zone: str) -> datetime:
        found = self._midnights.get((day, zone))
        if found is None:
            midnight = datetime.combine(day, time(0), ZoneInfo(zone))
            found = self._midnights[day, zone] = midnight.astimezone(UTC)
        return found

    def nudging(self, city: CityRow) -> tuple[bool, datetime, datetime | None]:
        """Whether a nudge may go out now in the city, when one may next (if not now), and until when
        one planned now may still go out: the same for every city with the same zone and settings."""
        key = (city.zone, city.working_days, city.nudge_hour, city.quiet_start, city.quiet_end)
        found = self._nudging.get(key)
        if found is None:
            may = _may_nudge(city, self.now.astimezone(ZoneInfo(city.zone)))
            found = self._nudging[key] = (
                may,
                self.now if may else _first_nudge_time(city, self.now),
                _nudge_until(city, self.now) if may else None,
            )
        return found

    def everywhere(self, store: Store) -> set[str]:
        """The coaches of all cities, read once a pass (a scan of everyone on the roster)."""
        if self._everywhere is None:
            self._everywhere = agenda.coaches_everywhere(store)
        return self._everywhere

    def instant(self, at: datetime | None) -> Any:
        if at is None:
            return None
        value = self._instants.get(at)
        if value is None:
            value = self._instants[at] = bulk.value(at, self.postgres, {})
        return value

    def row(
        self,
        key: str,
        recipient: str,
        kind: str,
        city_id: int | None,
        due: datetime,
        payload: str,
        expires: datetime | None = None,
        dropped: str | None = None,
    ) -> OutboxRow:
        """One message to plan, or the record that its moment passed while nobody was running
        (`dropped`), as `agenda.OUTBOX_COLUMNS` lists its columns."""
        status = _DROPPED if dropped else _PENDING
        due_at, expires_at = self.instant(due), self.instant(expires)
        return (
            key,
            recipient,
            kind,
            city_id,
            payload,
            status,
            0,
            due_at,
            self.created,
            expires_at,
            dropped,
            self.created,
        )

    def schedule(
        self, sessions: Sequence[views.SessionRow], zone: str, offsets: tuple[int, ...]
    ) -> "_Schedule":
        """The reminders due now of a city with these sessions, zone and offsets: the same for every
        city that has them, whichever its sessions' ids (they are named by position)."""
        key = (zone, offsets, views.series_key(sessions))
        found = self._schedules.get(key)
        if found is None:
            found = self._schedules[key] = _schedule(sessions, zone, offsets, self.now)
        return found

    def reminder(self, city: CityRow, due: "_Due", open_blockers: int, last_update: datetime | None) -> str:
        """The reminder's payload: one text for every city with the same language, zone, pathway,
        session and figures; only the city's id differs."""
        quiet = due.previous is not None and (last_update is None or last_update < due.previous)
        start = due.occurrence.start
        key = (city.language, city.zone, city.pathway, due.occurrence.title, start, open_blockers, quiet)
        template = self._reminders.get(key)
        if template is None:
            t = translator(city.language)
            reply = reminder_text(
                t, city.zone, city.pathway, self.program, due.occurrence, open_blockers, quiet
            )
            template = self._reminders[key] = reply.model_dump(mode="json")
        return json.dumps({**template, "about": [city.id]})


# -- who hears about a city -------------------------------------------------------------------------------
def recipients(store: Store, city: City) -> list[str]:
    """A city is reached in its bound channels, and its members directly where none of those channels
    reaches them: on a platform the city has no channel on (WhatsApp has no groups at all). A person
    who said `stop` is left out."""
    assert city.id is not None
    return _recipients(*agenda.audiences(store, [city.id])[city.id])


def _recipients(channels: list[str], members: list[str]) -> list[str]:
    """`members`: those who did not say `stop`."""
    if not channels:
        return members
    platforms = {platform_of(channel) for channel in channels}
    return channels + [identity for identity in members if platform_of(identity) not in platforms]


# -- cities: reminders, nudges, stale blockers ------------------------------------------------------------
@dataclass(slots=True)
class _Message:
    """One reply a city may need now, for each of its recipients under their own key. Its payload is
    made only if one of those keys is not taken (`build`: from the texts of stale blockers)."""

    kind: str
    city_id: int
    due: datetime
    keys: list[tuple[str, str]]  # (key, recipient)
    build: Callable[[dict[int, str]], str] | None  # None: dropped, no payload
    expires: datetime | None = None
    dropped: str | None = None
    blocker: int | None = None


def _plan_cities(store: Store, ids: list[int], run: _Pass) -> _Work:
    """Plan a batch of cities in a fixed number of statements: read what they need at once, decide
    each city's messages, ask once which keys are taken, and build replies only for the rest."""
    now = run.now
    cities = agenda.cities(store, ids)
    audiences = agenda.audiences(store, ids)
    sessions = agenda.sessions_by_city(store, ids)
    latest = agenda.latest_updates(store, ids)
    blockers = views.open_blockers(store, ids)
    work = _Work()
    messages: list[_Message] = []
    for city in cities:
        targets = _recipients(*audiences[city.id])
        mine = blockers.get(city.id, [])
        last = latest.get(city.id)
        last_at = last.created_at if last else None
        reminders, next_at = _reminders(city, sessions.get(city.id, []), targets, len(mine), last_at, run)
        nudges, nudge_at = _nudge(city, last, targets, run)
        stale, stale_at = _stale(city, mine, run)
        messages += reminders + nudges + stale
        work.plans[city.id] = min(next_at, nudge_at, stale_at, now + LONGEST_WAIT)
    # Coaches are read only for the cities with a stale blocker to tell them about.
    stale_in = sorted({m.city_id for m in messages if m.blocker is not None})
    if stale_in:
        coaches = agenda.coaches_by_city(store, stale_in, run.everywhere(store))
        for m in messages:
            if m.blocker is not None:
                m.keys = [(stale_key(coach, m.blocker), coach) for coach in coaches[m.city_id]]
    taken = agenda.existing_keys(store, [key for m in messages for key, _r in m.keys])
    free = [(m, [(k, r) for k, r in m.keys if k not in taken] if taken else m.keys) for m in messages]
    free = [(m, keys) for m, keys in free if keys]
    texts = views.blocker_texts(store, sorted({m.blocker for m, _k in free if m.blocker is not None}))
    for m, keys in free:
        # One payload for every recipient of the same message.
        payload = m.build(texts) if m.build is not None else "{}"
        for key, recipient in keys:
            work.rows.append(run.row(key, recipient, m.kind, m.city_id, m.due, payload, m.expires, m.dropped))
    return work


@dataclass(frozen=True, slots=True)
class _Due:
    """A reminder due now, as every city with the same sessions has it."""

    position: int  # of the session among the city's
    occurrence: Occurrence
    kind: str
    due: datetime
    expires: datetime | None
    dropped: str | None
    previous: datetime | None  # when the session before this one started


@dataclass(frozen=True, slots=True)
class _Schedule:
    due: list[_Due]
    next_at: datetime  # when the next reminder of any session falls due


@lru_cache(maxsize=256)
def _offsets(given: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(sorted({int(o) for o in given if int(o) > 0}, reverse=True))


def _schedule(
    sessions: Sequence[views.SessionRow], zone: str, offsets: tuple[int, ...], now: datetime
) -> _Schedule:
    """Reminders of sessions whose reminder time has come (each until the next one is due, the last
    one until the session starts), and when the next reminder of any session falls due."""
    never = now + LONGEST_WAIT
    horizon = now + timedelta(minutes=offsets[0])
    window = between(sessions, zone, now + timedelta(microseconds=1), horizon + timedelta(seconds=1))
    position = {s.id: index for index, s in enumerate(sessions)}
    found: list[_Due] = []
    next_at = never
    for occurrence in window:
        previous: Occurrence | None = None
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
            kind = f"{REMINDER_KIND}{offset}"
            dropped = None
            if now >= useful_until:
                dropped = f"{kind} for session at {occurrence.start:%Y-%m-%d %H:%M}Z no longer useful"
            previous = previous or last_before(sessions, zone, occurrence.start)
            found.append(
                _Due(
                    position[occurrence.session_id],
                    occurrence,
                    kind,
                    due,
                    None if dropped else useful_until,
                    dropped,
                    previous.start if previous else None,
                )
            )
    # Past the window, the first session's earliest reminder (no later session has an earlier one).
    later = upcoming(sessions, zone, horizon + timedelta(seconds=1), count=1)
    if later:
        next_at = min(next_at, max(later[0].start - timedelta(minutes=offsets[0]), now))
    return _Schedule(found, next_at)


def _reminders(
    city: CityRow,
    sessions: list[views.SessionRow],
    targets: list[str],
    open_blockers: int,
    last_update: datetime | None,
    run: _Pass,
) -> tuple[list[_Message], datetime]:
    offsets = _offsets(tuple(city.reminder_offsets))
    if not offsets or not sessions:
        return [], run.now + LONGEST_WAIT
    schedule = run.schedule(sessions, city.zone, offsets)
    found: list[_Message] = []
    for due in schedule.due:
        session_id = sessions[due.position].id
        keys = [(reminder_key(r, due.kind, session_id, due.occurrence.start), r) for r in targets]

        def build(_texts: dict[int, str], due: _Due = due) -> str:
            return run.reminder(city, due, open_blockers, last_update)

        found.append(
            _Message(
                due.kind, city.id, due.due, keys, None if due.dropped else build, due.expires, due.dropped
            )
        )
    return found, schedule.next_at


def reminder_text(
    t: Translator,
    zone: str,
    pathway: str | None,
    program: Program,
    occurrence: Occurrence,
    open_blockers: int,
    no_update: bool,
) -> Reply:
    """A reminder of `occurrence` (`no_update`: the city posted none since its last session), for
    any city: the caller names the city in `about`."""
    _ = t.gettext
    local = occurrence.local_start(zone)
    session = session_title(occurrence.title, t)
    lines = [
        # `{soon}` stays in the text: the deliverer renders it when the reminder is sent.
        _("{title} starts {soon}: {date}, {time}.").format(
            title=session, soon=SOON, date=t.date(local.date()), time=t.time(local)
        ),
        _("Phase: {phase}").format(phase=program.phase_label(local.date(), pathway, t.language)),
        t.ngettext("{count} open blocker", "{count} open blockers", open_blockers).format(
            count=t.number(open_blockers)
        ),
    ]
    if no_update:
        lines.append(_("No update since your last session: post one before you meet, e.g. `update: …`"))
    title = _("Reminder: {title}").format(title=session)
    return Reply(
        text=title + "\n" + "\n".join(lines),
        title=title,
        items=lines,
        about=[0],
        starts_at=occurrence.start,
        language=t.language,
    )


def in_quiet_hours(city: City | CityRow, local: datetime) -> bool:
    return _quiet_hour(city.quiet_start, city.quiet_end, local.hour)


def _quiet_hour(start: int, end: int, hour: int) -> bool:
    if start == end:
        return False
    if start > end:  # overnight, e.g. 20:00–08:00
        return hour >= start or hour < end
    return start <= hour < end


@lru_cache(maxsize=256)
def nudge_hours(nudge_hour: int, quiet_start: int, quiet_end: int) -> tuple[int, ...]:
    """The hours of a day a nudge may go out: from the nudge hour to midnight, outside quiet hours
    (`city set` refuses settings that leave none)."""
    return tuple(h for h in range(nudge_hour, 24) if not _quiet_hour(quiet_start, quiet_end, h))


def _may_nudge(city: CityRow, local: datetime) -> bool:
    return local.weekday() in city.working_days and local.hour in nudge_hours(
        city.nudge_hour, city.quiet_start, city.quiet_end
    )


def _first_nudge_time(city: CityRow, after: datetime) -> datetime:
    """The first instant at or after `after` when a nudge may go out: a working day, from the nudge
    hour, outside quiet hours (a week ahead at most)."""
    tz = ZoneInfo(city.zone)
    local = after.astimezone(tz)
    if _may_nudge(city, local):
        return after
    hours = nudge_hours(city.nudge_hour, city.quiet_start, city.quiet_end)
    for days in range(8):
        day = local.date() + timedelta(days=days)
        if not hours or day.weekday() not in city.working_days:
            continue
        later = [h for h in hours if days > 0 or h > local.hour]
        if later:
            # An hour the clocks skip reads as the hour after it, when the nudge may go out too.
            return max(after, datetime.combine(day, time(later[0]), tz).astimezone(UTC))
    return after + LONGEST_WAIT


def _nudge_until(city: CityRow, now: datetime) -> datetime | None:
    """The first local hour after `now` in which a nudge may not go out (quiet hours, before the nudge
    hour, a day off), a week ahead at most; None: none comes. Today's start of quiet hours is not it:
    it has passed when they begin at midnight (`--quiet 0-8`), or there are none (`--quiet 0-0`), and a
    nudge that expired as it was planned was dropped, never sent."""
    hour = now.astimezone(ZoneInfo(city.zone)).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    for hours in range(1, 8 * 24 + 1):
        later = hour + timedelta(hours=hours)
        if not _may_nudge(city, later.astimezone(ZoneInfo(city.zone))):
            return later
    return None


def _nudge(
    city: CityRow, latest: agenda.LatestUpdate | None, targets: list[str], run: _Pass
) -> tuple[list[_Message], datetime]:
    now = run.now
    never = now + LONGEST_WAIT
    if city.nudge_after_days <= 0:
        return [], never
    over = run.program_over(city.zone)
    if over is not None and now >= over:
        return [], never  # the program has ended: nobody asks a city what moved this week any more
    since = latest.created_at if latest else city.created_at
    every = timedelta(days=city.nudge_after_days)
    begins = run.program_begins(city.zone)
    cohort = ""
    if begins is not None and since < begins:
        # Nobody is asked what moved before the program began: a city added ahead of its cohort, or
        # quiet since the last one, counts its quiet days from the first day.
        since, cohort = begins, f"@{begins:%Y-%m-%d}"
        if now < begins:
            return [], min(_first_nudge_time(city, begins + every), never)
    quiet_days = (now - since).days
    stretch = quiet_days // city.nudge_after_days
    # The next stretch begins after (stretch + 1) × N quiet days.
    next_stretch = _first_nudge_time(city, since + every * (stretch + 1))
    if stretch < 1:
        return [], next_stretch
    may_nudge, first_nudge, until = run.nudging(city)
    if not may_nudge:
        return [], min(first_nudge, next_stretch)
    if over is not None:
        until = over if until is None else min(until, over)  # held up past the end, it is dropped
    # One nudge per stretch of N quiet days: the first after N days, the next after 2N, and so on.
    # The cohort's start, when quiet days count from it: the stretches of a city quiet since the last
    # cohort begin again at 1, and must not find that cohort's nudges already planned.
    occurrence = f"{city.slug}:{latest.id if latest else 0}:{stretch}{cohort}"

    def build(_texts: dict[int, str]) -> str:
        t = translator(city.language)
        text = t.ngettext(
            "No update from {city} in {count} day. What moved this week? Reply `update: …`",
            "No update from {city} in {count} days. What moved this week? Reply `update: …`",
            quiet_days,
        ).format(city=city.name, count=t.number(quiet_days))
        # Its language picks the WhatsApp template it goes in outside the 24-hour window.
        return json.dumps({**run.plain, "text": text, "language": t.language})

    keys = [(f"{r}|nudge|{occurrence}", r) for r in targets]
    return [_Message("nudge", city.id, now, keys, build, until)], next_stretch


def _stale(city: CityRow, blockers: list[views.OpenBlocker], run: _Pass) -> tuple[list[_Message], datetime]:
    """Coaches hear once of each blocker open longer than the city's limit (their keys are added
    once the coaches are read)."""
    now = run.now
    never = now + LONGEST_WAIT
    if city.stale_blocker_days <= 0:
        return [], never
    limit = timedelta(days=city.stale_blocker_days)
    found: list[_Message] = []
    next_at = never
    for blocker in blockers:
        if now - blocker.opened_at < limit:
            next_at = min(next_at, blocker.opened_at + limit)
            continue
        days = (now - blocker.opened_at).days

        def build(texts: dict[int, str], b: int = blocker.id, days: int = days) -> str:
            # The payload of Reply(text=…, title=…, buttons=[Button(…)]), from the pass's templates.
            # In English, as every notice to coaches (handlers/blockers.py), counted as English counts;
            # called by another name, it stays out of the catalogs, which would translate it for nobody.
            english = translator("en")
            plural = english.ngettext
            resolve = {**run.button, "value": str(b), "command": f"/cda resolve {b}"}
            text = plural(
                "Blocker #{number} in {city} has been open for {count} day: {text}",
                "Blocker #{number} in {city} has been open for {count} days: {text}",
                days,
            )
            title = plural(
                "Blocker #{number} open for {count} day — {city}",
                "Blocker #{number} open for {count} days — {city}",
                days,
            )
            values = {"number": b, "city": city.name, "count": english.number(days)}
            return json.dumps(
                {
                    **run.plain,
                    "text": text.format(text=texts[b], **values),
                    "title": title.format(**values),
                    "buttons": [resolve],
                }
            )

        found.append(_Message(STALE_KIND, city.id, now, [], build, blocker=blocker.id))
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
        if unknown:
            self.places.update({c.id: c for c in views.places(store, unknown)})
        return sorted((self.places[i] for i in ids if i in self.places), key=lambda c: (c.name, c.id))


def _plan_digests(store: Store, ids: list[int], run: _Pass) -> _Work:
    """The week's digest of each coach whose Monday 08:00 has come; the digest of a city is written
    once a pass, whichever coaches' digests show it."""
    now, sections = run.now, run.sections
    work = _Work()
    coaches = agenda.coaches(store, ids)
    linked = views.coached_cities(store, [c.id for c in coaches])
    # A coach without a zone of their own keeps the zone of their first city by name.
    places = views.names_and_zones(store, sorted({i for ids in linked.values() for i in ids}))
    first_of_all = views.first_city_zone(store) if any(c.all_cities for c in coaches) else None
    due: list[tuple[agenda.CoachRow, str, datetime]] = []
    for coach in coaches:
        mine = sorted((places[i] for i in linked.get(coach.id, []) if i in places), key=lambda p: p[:2])
        fallback = first_of_all if coach.all_cities else (mine[0][2] if mine else None)
        zone = coach.zone or fallback or "UTC"
        local = now.astimezone(ZoneInfo(zone))
        work.plans[coach.id] = min(_next_digest(local), now + LONGEST_WAIT)
        if local.weekday() != DIGEST_WEEKDAY or local.hour < DIGEST_HOUR:
            continue
        over, begins = run.program_over(zone), run.program_begins(zone)
        digest_at = datetime.combine(local.date(), time(DIGEST_HOUR), local.tzinfo)
        if over is not None and digest_at >= over:
            continue  # the program has ended: no digest of cities that have finished
        if begins is not None and digest_at < begins:
            continue  # nor of cities that have not begun
        if not (coach.all_cities and first_of_all) and not mine:
            continue  # no city to tell about
        year, week, _day = local.isocalendar()
        due.append((coach, f"{coach.identity}|digest|{year}-W{week:02d}", local))
    taken = agenda.existing_keys(store, [key for _c, key, _l in due])
    due = [d for d in due if d[1] not in taken]
    if not due:
        return work
    t = translator("en")
    sections.of(store, sorted({i for coach, _k, _l in due if not coach.all_cities for i in linked[coach.id]}))
    shown = {
        coach.id: sections.all_cities(store) if coach.all_cities else sections.of(store, linked[coach.id])
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
        if not shown[coach.id]:
            continue  # every city they coach has left the program
        reply = digest_of(t, data, shown[coach.id], now, section=lambda c: sections.text[c.id])
        # Named, so the deliverer can tell whether the coach still coaches them all when it is sent.
        reply.about = [c.id for c in shown[coach.id]]
        when = datetime.combine(local.date(), time(DIGEST_HOUR), local.tzinfo)
        payload = json.dumps(reply.model_dump(mode="json"))
        work.rows.append(
            run.row(key, coach.identity, "digest", None, when, payload, when + timedelta(days=1))
        )
    return work
