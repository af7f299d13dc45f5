"""What is due now: session reminders, momentum nudges, weekly digests and stale-blocker notices.

A pass looks at the clock and the database only; everything it decides is written to the outbox
under a unique key (recipient, kind, occurrence), so planning the same thing twice — in a second
pass, a second server, after a restart — finds the key and adds nothing.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.calendar.program import Program, program_from
from bot.calendar.sessions import Occurrence, between, last_before, session_title
from bot.core.i18n import Translator, translator
from bot.core.identity import platform_of
from bot.core.messages import SOON, Button, Reply
from handlers.status import digest_reply
from store.models import City, CoachingSession, OutboxMessage, OutboxStatus, Person
from store.repo import Store

log = logging.getLogger("cda_bot.scheduler")

DIGEST_WEEKDAY, DIGEST_HOUR = 0, 8  # Monday 08:00 in the coach's zone


@dataclass
class PlanReport:
    planned: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def plan(store: Store, now: datetime) -> PlanReport:
    report = PlanReport()
    program = program_from(store.program_document())
    for city in store.cities():
        targets = recipients(store, city)
        _session_reminders(store, city, targets, program, now, report)
        _momentum_nudge(store, city, targets, now, report)
    _weekly_digests(store, now, report)
    _stale_blockers(store, now, report)
    return report


def recipients(store: Store, city: City) -> list[str]:
    """A city is reached in its bound channels, and its members directly where none of those channels
    reaches them: on a platform the city has no channel on (WhatsApp has no groups at all). A person
    who said `stop` is left out."""
    assert city.id is not None
    channels = store.bindings_of(city.id)
    platforms = {platform_of(channel) for channel in channels}
    members = [
        m.identity
        for m in store.members_of(city.id)
        if m.stopped_at is None and platform_of(m.identity) not in platforms
    ]
    return channels + members


def _record(
    store: Store,
    report: PlanReport,
    key: str,
    recipient: str,
    kind: str,
    city_id: int | None,
    due: datetime,
    now: datetime,
    reply: Reply | None = None,
    expires: datetime | None = None,
    dropped: str | None = None,
) -> None:
    """Plan one message, or record once that its moment passed while nobody was running (`dropped`)."""
    message = OutboxMessage(
        key=key,
        recipient=recipient,
        kind=kind,
        city_id=city_id,
        due_at=due,
        next_attempt_at=now,
        expires_at=expires,
        created_at=now,
        payload=reply.model_dump(mode="json") if reply else {},
        status=OutboxStatus.dropped if dropped else OutboxStatus.pending,
        last_error=dropped,
    )
    if not store.enqueue(message):
        return
    if dropped:
        log.info("reminder dropped: %s", dropped, extra={"key": key})
        report.dropped.append(key)
    else:
        report.planned.append(key)


# -- session reminders ------------------------------------------------------------------------------------
def _session_reminders(
    store: Store, city: City, targets: list[str], program: Program, now: datetime, report: PlanReport
) -> None:
    offsets = sorted({int(o) for o in city.reminder_offsets if int(o) > 0}, reverse=True)
    if not offsets or city.id is None:
        return
    sessions = store.sessions_of(city.id)
    if not sessions:
        return
    horizon = now + timedelta(minutes=offsets[0])
    for occurrence in between(
        sessions, city.zone, now + timedelta(microseconds=1), horizon + timedelta(seconds=1)
    ):
        for index, offset in enumerate(offsets):
            due = occurrence.start - timedelta(minutes=offset)
            if due > now:
                continue
            # A reminder is useful until the next one is due (the last one, until the session starts).
            useful_until = (
                occurrence.start - timedelta(minutes=offsets[index + 1])
                if index + 1 < len(offsets)
                else occurrence.start
            )
            kind = f"reminder-{offset}"
            keys = {
                r: f"{r}|{kind}|{occurrence.session_id}@{occurrence.start:%Y-%m-%dT%H:%MZ}" for r in targets
            }
            planned = store.existing_keys(list(keys.values()))
            missing = [r for r, key in keys.items() if key not in planned]
            if not missing:
                continue
            if now >= useful_until:
                reason = f"{kind} for session at {occurrence.start:%Y-%m-%d %H:%M}Z no longer useful"
                for r in missing:
                    _record(store, report, keys[r], r, kind, city.id, due, now, dropped=reason)
                continue
            reply = reminder_reply(translator(city.language), store, city, program, occurrence, sessions, now)
            for r in missing:
                _record(store, report, keys[r], r, kind, city.id, due, now, reply, useful_until)


def reminder_reply(
    t: Translator,
    store: Store,
    city: City,
    program: Program,
    occurrence: Occurrence,
    sessions: list[CoachingSession],
    now: datetime,
) -> Reply:
    _ = t.gettext
    assert city.id is not None
    blockers = store.count_open_blockers(city.id)
    local = occurrence.local_start(city.zone)
    session = session_title(occurrence.title, t)
    lines = [
        # `{soon}` stays in the text: the deliverer renders it when the reminder is sent.
        _("{title} starts {soon}: {date}, {time}.").format(
            title=session, soon=SOON, date=t.date(local.date()), time=t.time(local)
        ),
        _("Phase: {phase}").format(phase=program.phase_label(local.date(), city.pathway, t.language)),
        t.ngettext("{count} open blocker", "{count} open blockers", blockers).format(
            count=t.number(blockers)
        ),
    ]
    previous = last_before(sessions, city.zone, occurrence.start)
    last_update = store.last_update(city.id)
    if previous is not None and (last_update is None or last_update.created_at < previous.start):
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


# -- momentum nudges --------------------------------------------------------------------------------------
def in_quiet_hours(city: City, local: datetime) -> bool:
    start, end = city.quiet_start, city.quiet_end
    if start == end:
        return False
    if start > end:  # overnight, e.g. 20:00–08:00
        return local.hour >= start or local.hour < end
    return start <= local.hour < end


def _momentum_nudge(store: Store, city: City, targets: list[str], now: datetime, report: PlanReport) -> None:
    if city.nudge_after_days <= 0 or city.id is None:
        return
    tz = ZoneInfo(city.zone)
    local = now.astimezone(tz)
    if (
        local.weekday() not in city.working_days
        or in_quiet_hours(city, local)
        or local.hour < city.nudge_hour
    ):
        return
    last = store.last_update(city.id)
    since = last.created_at if last else city.created_at
    quiet_days = (now - since).days
    if quiet_days < city.nudge_after_days:
        return
    # One nudge per stretch of N quiet days: the first after N days, the next after 2N, and so on.
    stretch = quiet_days // city.nudge_after_days
    occurrence = f"{city.slug}:{last.id if last else 0}:{stretch}"
    keys = {recipient: f"{recipient}|nudge|{occurrence}" for recipient in targets}
    planned = store.existing_keys(list(keys.values()))
    if len(planned) == len(keys):
        return
    quiet_from = datetime.combine(local.date(), time(city.quiet_start % 24), tz)
    t = translator(city.language)
    text = t.ngettext(
        "No update from {city} in {count} day. What moved this week? Reply `update: …`",
        "No update from {city} in {count} days. What moved this week? Reply `update: …`",
        quiet_days,
    ).format(city=city.name, count=t.number(quiet_days))
    reply = Reply(text=text)
    for recipient, key in keys.items():
        if key not in planned:
            _record(store, report, key, recipient, "nudge", city.id, now, now, reply, max(quiet_from, now))


# -- coaches: weekly digest and stale blockers ------------------------------------------------------------
def coach_zone(store: Store, coach: Person) -> str:
    if coach.zone:
        return coach.zone
    cities = store.cities(store.coached_city_ids(coach))
    return cities[0].zone if cities else "UTC"


def _weekly_digests(store: Store, now: datetime, report: PlanReport) -> None:
    for coach in store.coaches():
        tz = ZoneInfo(coach_zone(store, coach))
        local = now.astimezone(tz)
        if local.weekday() != DIGEST_WEEKDAY or local.hour < DIGEST_HOUR:
            continue
        year, week, _day = local.isocalendar()
        key = f"{coach.identity}|digest|{year}-W{week:02d}"
        if store.outbox_has(key):
            continue
        cities = store.cities(store.coached_city_ids(coach))
        if not cities:
            continue
        due = datetime.combine(local.date(), time(DIGEST_HOUR), tz)
        reply = digest_reply(translator("en"), store, cities, now)
        _record(store, report, key, coach.identity, "digest", None, due, now, reply, due + timedelta(days=1))


def _stale_blockers(store: Store, now: datetime, report: PlanReport) -> None:
    shortest = min((c.stale_blocker_days for c in store.cities() if c.stale_blocker_days > 0), default=0)
    if not shortest:
        return
    for blocker in store.blockers_opened_before(now - timedelta(days=shortest)):
        city = store.city(blocker.city_id)
        assert city is not None and blocker.id is not None
        if city.stale_blocker_days <= 0 or now - blocker.opened_at < timedelta(days=city.stale_blocker_days):
            continue
        days = (now - blocker.opened_at).days
        reply = Reply(
            text=f"Blocker #{blocker.id} in {city.name} has been open for {days} days: {blocker.text}",
            title=f"Blocker #{blocker.id} open for {days} days — {city.name}",
            buttons=[
                Button(
                    label="Resolve",
                    action="resolve_blocker",
                    value=str(blocker.id),
                    command=f"/cda resolve {blocker.id}",
                )
            ],
        )
        for coach in store.coaches_of(blocker.city_id):
            key = f"{coach.identity}|blocker_stale|{blocker.id}"
            if not store.outbox_has(key):
                _record(store, report, key, coach.identity, "blocker_stale", city.id, now, now, reply)
