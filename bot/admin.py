"""What admins do from the command line: cities, people, channel bindings, sessions.

Every function checks its input before it writes and raises AdminError with one clear line;
the caller's unit of work then rolls back, so a refused command changes nothing.
"""

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import update
from sqlmodel import col, select

from bot.calendar.sessions import (
    DEFAULT_TITLE,
    Fields,
    SessionError,
    between,
    check_session,
    in_years,
    local_start,
)
from bot.core.identity import IdentityError, normalize_identity
from scheduler.planner import nudge_hours
from store import dashboard
from store.models import (
    LEFT_PROGRAM,
    NUDGE_AFTER_DAYS_MAX,
    REPLY_KIND,
    ChannelBinding,
    City,
    CoachCity,
    CoachingSession,
    JoinCode,
    OutboxMessage,
    OutboxStatus,
    Pathway,
    Person,
    Role,
)
from store.repo import Store

LANGUAGES = ("en", "es", "pt")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class AdminError(ValueError):
    pass


# Zone names the system's database holds that are no place: `localtime` is whatever zone the server is
# set to (another server, another time), `Factory` a placeholder whose time reads "-00". (Python lists
# no posix/… or right/… copies of the database, nor posixrules.)
NOT_PLACES = frozenset({"localtime", "Factory"})


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_PLACES


def check_zone(zone: str) -> str:
    if zone not in _zones():
        raise AdminError(f"unknown time zone '{zone}': use an IANA name such as America/Bogota")
    return zone


def identity(text: str) -> str:
    try:
        return normalize_identity(text)
    except IdentityError as error:
        raise AdminError(str(error)) from None


def city_of(store: Store, slug: str) -> City:
    slug = slug.strip()  # as `city add` stores it: `--city " Quito "` is quito
    city = store.city_by_slug(slug)
    if city is None:
        known = ", ".join(c.slug for c in store.cities()) or "none yet"
        raise AdminError(f"unknown city '{slug}' (known: {known})")
    return city


def add_city(
    store: Store,
    slug: str,
    name: str,
    zone: str,
    now: datetime,
    country: str | None = None,
    pathway: str | None = None,
    language: str = "en",
) -> City:
    slug = slug.strip().lower()
    if not _SLUG.match(slug):
        raise AdminError(f"bad slug '{slug}': use 2–63 lower-case letters, digits and dashes")
    if not name.strip():
        raise AdminError("--name must not be empty")
    check_zone(zone)
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        raise AdminError(f"bad --country '{country}': use a two-letter ISO code such as CO")
    if pathway is not None and pathway not in Pathway.__members__:
        raise AdminError(f"bad --pathway '{pathway}': use implementation or capacity")
    if language not in LANGUAGES:
        raise AdminError(f"bad --lang '{language}': use one of {', '.join(LANGUAGES)}")
    if store.city_by_slug(slug) is not None:
        raise AdminError(f"city '{slug}' already exists")
    return store.add_city(
        City(
            slug=slug,
            name=name.strip(),
            zone=zone,
            country=country.upper() if country else None,
            pathway=pathway,
            language=language,
            created_at=now,
        )
    )


def _name(name: str | None) -> str | None:
    """A person's name, trimmed; an empty one is refused (a member listed, and greeted, as nobody)."""
    if name is None:
        return None
    if not name.strip():
        raise AdminError("--name must not be empty (leave it out for no name)")
    return name.strip()


def _new_person(store: Store, who: str) -> str:
    who = identity(who)
    existing = store.person(who)
    if existing is not None:
        raise AdminError(f"{who} is already on the roster as {existing.role}")
    return who


def city_of_member(store: Store, who: str) -> City | None:
    """The city `who` is a member of, if they are one."""
    person = store.person(identity(who))
    if person is None or person.role != Role.member or person.city_id is None:
        return None
    return store.session.get(City, person.city_id)


def add_member(store: Store, who: str, city_slug: str, now: datetime, name: str | None = None) -> Person:
    """A new member of a city, or a member of another city moved to this one: the same row, so what
    they asked for (`stop`) and what they posted stay theirs."""
    who, name = identity(who), _name(name)
    city = city_of(store, city_slug)
    existing = store.person(who)
    if existing is None:
        return store.add_person(
            Person(identity=who, name=name, role=Role.member, city_id=city.id, created_at=now)
        )
    if existing.role != Role.member:
        raise AdminError(f"{who} is already on the roster as {existing.role}")
    if existing.city_id == city.id:
        raise AdminError(f"{who} is already on the roster as member of {city.slug}")
    existing.city_id = city.id
    if name:
        existing.name = name
    store.session.add(existing)
    store.session.flush()
    return existing


def _distinct(cities: list[City]) -> list[City]:
    """Each city once, in the order given: `--city lima --city Lima` names one city (twice, it was
    linked twice, against the table's key)."""
    return list({city.id: city for city in cities}.values())


def add_coach(
    store: Store,
    who: str,
    city_slugs: list[str],
    now: datetime,
    name: str | None = None,
    zone: str | None = None,
) -> tuple[Person, list[City]]:
    """A new coach of the listed cities (all cities when none are listed), or more cities for a coach."""
    who, name = identity(who), _name(name)
    cities = _distinct([city_of(store, slug) for slug in city_slugs])
    if zone is not None:
        check_zone(zone)
    existing = store.person(who)
    if existing is not None:
        if existing.role != Role.coach:
            raise AdminError(f"{who} is already on the roster as {existing.role}")
        if not cities:
            existing.all_cities = True
        known = set(store.coached_city_ids(existing))
        for city in cities:
            if city.id not in known:
                store.session.add(CoachCity(person_id=existing.id, city_id=city.id))  # type: ignore[arg-type]
        if name:
            existing.name = name
        if zone:
            existing.zone = zone
        store.session.add(existing)
        store.session.flush()
        return existing, cities
    person = Person(
        identity=who, name=name, role=Role.coach, all_cities=not cities, zone=zone, created_at=now
    )
    return store.add_person(person, [c.id for c in cities if c.id is not None]), cities


def add_admin(store: Store, who: str, now: datetime, name: str | None = None) -> Person:
    who, name = _new_person(store, who), _name(name)
    return store.add_person(Person(identity=who, name=name, role=Role.admin, created_at=now))


def bind(
    store: Store, conversation: str, city_slug: str, now: datetime
) -> tuple[ChannelBinding, City | None]:
    """Bind a conversation to a city; returns the binding and the city it was bound to before, if any."""
    conversation = identity(conversation)
    city = city_of(store, city_slug)
    before = store.bound_city(conversation)
    return store.bind(conversation, city.id, now), before  # type: ignore[arg-type]


OPTIONS = Fields(start="--start", end="--duration", rule="--rrule", until="--until")


def _local_start(text: str, zone: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(f"bad --start '{text}': use local time like 2026-12-01T10:00") from None
    try:
        return local_start(value.replace(second=0, microsecond=0), zone, "--start")
    except SessionError as error:
        raise AdminError(str(error)) from None


def _until(text: str, zone: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(f"bad --until '{text}': use a date like 2027-03-31") from None
    if len(text.strip()) == 10:  # a date alone: sessions on that day still count
        return datetime.combine(value.date(), time(23, 59, 59))
    try:
        # Read as --start is: the city's own time, or converted to it from an offset (once dropped).
        return local_start(value, zone, "--until")
    except SessionError as error:
        raise AdminError(str(error)) from None


def add_session(
    store: Store,
    city_slug: str,
    start: str,
    now: datetime,
    duration: int = 60,
    title: str | None = None,
    rrule: str | None = None,
    until: str | None = None,
) -> CoachingSession:
    city = city_of(store, city_slug)
    start_local = _local_start(start, city.zone)
    if not 5 <= duration <= 600:
        raise AdminError(f"bad --duration {duration}: give minutes between 5 and 600")
    if title is not None and not title.strip():
        raise AdminError("--title must not be empty")
    until_local = _until(until, city.zone) if until else None
    if rrule is not None:
        rrule = rrule.strip()
        if rrule.upper().startswith("RRULE:"):
            rrule = rrule[6:]
    try:
        check_session(start_local, duration, rrule, until_local, OPTIONS)
    except SessionError as error:
        raise AdminError(str(error)) from None
    return store.add_session(
        CoachingSession(
            city_id=city.id,  # type: ignore[arg-type]
            title=(title or DEFAULT_TITLE).strip(),
            start_local=start_local,
            duration_min=duration,
            rrule=rrule,
            until_local=until_local,
            created_at=now,
        )
    )


def skip_day(store: Store, city_slug: str, day_text: str, now: datetime) -> list[str]:
    """Cancel the city's sessions on one local day (a holiday): recurring ones get an exception,
    one-off ones are removed. Returns what was cancelled."""
    city = city_of(store, city_slug)
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise AdminError(f"bad --date '{day_text}': use YYYY-MM-DD") from None
    tz = ZoneInfo(city.zone)
    start = datetime.combine(day, time(), tz)
    sessions = {s.id: s for s in store.sessions_of(city.id)}  # type: ignore[arg-type]
    # No session is outside those years, and the day's bounds in UTC may not be a datetime there.
    found = (
        between(sessions.values(), city.zone, start, start + timedelta(days=1)) if in_years(day.year) else []
    )
    if not found:
        raise AdminError(f"{city.slug} has no session on {day.isoformat()}")
    cancelled = []
    for occurrence in found:
        session = sessions[occurrence.session_id]
        local = occurrence.wall or occurrence.local_start(city.zone).replace(tzinfo=None)
        if session.rrule:
            session.exdates = sorted({*session.exdates, local.isoformat()})
            store.session.add(session)
        else:
            store.session.delete(session)
        cancelled.append(f"{session.title} {local:%Y-%m-%d %H:%M}")
    store.session.flush()
    return cancelled


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_offsets(text: str) -> list[int]:
    """`24h,1h` or `90m` or `none` as minutes before a session, largest first."""
    if text.strip().lower() in ("none", "off", ""):
        return []
    minutes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{1,4})\s*([hm])\s*", part.lower())
        if not match:
            raise AdminError(f"bad --reminders '{text}': use hours or minutes like 24h,1h or 90m")
        value = int(match.group(1)) * (60 if match.group(2) == "h" else 1)
        if not 1 <= value <= 14 * 24 * 60:
            raise AdminError(f"bad --reminders '{text}': each between 1m and 336h")
        minutes.append(value)
    return sorted(set(minutes), reverse=True)


def parse_days(text: str) -> list[int]:
    """`mon-fri`, `mon,wed,fri` or `sun-thu` as weekday numbers (Monday is 0)."""
    days: set[int] = set()
    for part in text.lower().split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if not 1 <= len(ends) <= 2 or any(e not in DAY_NAMES for e in ends):
            raise AdminError(f"bad --working-days '{text}': use mon-fri or mon,tue,thu")
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return sorted(days)


def parse_quiet(text: str) -> tuple[int, int]:
    """`20-8` as (20, 8); `none`, `off` or equal hours (`8-8`) as (0, 0): no quiet hours."""
    if text.strip().lower() in ("none", "off"):
        return 0, 0
    match = re.fullmatch(r"\s*(\d{1,2})(?::00)?\s*-\s*(\d{1,2})(?::00)?\s*", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 23:
        raise AdminError(f"bad --quiet '{text}': use hours like 20-8 (20:00 to 08:00), or none")
    start, end = int(match.group(1)), int(match.group(2))
    return (0, 0) if start == end else (start, end)


def describe_offsets(offsets: list[int]) -> str:
    if not offsets:
        return "off"
    return ",".join(f"{m // 60}h" if m % 60 == 0 else f"{m}m" for m in offsets)


def describe_days(days: list[int]) -> str:
    return ",".join(DAY_NAMES[d] for d in days) or "none"


def describe_quiet(start: int, end: int) -> str:
    # The scheduler reads equal hours (8-8) as no quiet hours at all, not as a day of them.
    return "none" if start == end else f"{start}:00–{end}:00"


def _check_nudges(city: City) -> None:
    # The scheduler nudges from the nudge hour to midnight, outside quiet hours: settings that leave no
    # such hour were taken, and then no nudge ever went out.
    if city.nudge_after_days > 0 and not nudge_hours(city.nudge_hour, city.quiet_start, city.quiet_end):
        raise AdminError(
            f"no nudge would ever go out: nudges go from the nudge hour ({city.nudge_hour}:00) to midnight, "
            f"all of it in quiet hours {describe_quiet(city.quiet_start, city.quiet_end)}; give an earlier "
            "--nudge-hour or other --quiet hours"
        )


def late_nudges(city: City) -> str | None:
    """What to tell an admin whose nudge hour is in quiet hours: nudges wait for them to end."""
    hours = nudge_hours(city.nudge_hour, city.quiet_start, city.quiet_end)
    if city.nudge_after_days <= 0 or not hours or hours[0] == city.nudge_hour:
        return None
    quiet = describe_quiet(city.quiet_start, city.quiet_end)
    return f"nudge hour {city.nudge_hour}:00 is in quiet hours {quiet}: nudges go out from {hours[0]}:00"


def _within(value: int, option: str, low: int, high: int, wanted: str) -> int:
    if not low <= value <= high:
        raise AdminError(f"bad {option} {value}: give {wanted}")
    return value


def set_city_schedule(
    store: Store,
    slug: str,
    reminders: str | None = None,
    nudge_after: int | None = None,
    nudge_hour: int | None = None,
    working_days: str | None = None,
    quiet: str | None = None,
    stale_after: int | None = None,
) -> City:
    city = city_of(store, slug)
    if reminders is not None:
        city.reminder_offsets = parse_offsets(reminders)
    if nudge_after is not None:
        city.nudge_after_days = _within(
            nudge_after,
            "--nudge-after",
            0,
            NUDGE_AFTER_DAYS_MAX,
            f"days from 0 (off) to {NUDGE_AFTER_DAYS_MAX}",
        )
    if nudge_hour is not None:
        city.nudge_hour = _within(nudge_hour, "--nudge-hour", 0, 23, "an hour from 0 to 23")
    if stale_after is not None:
        city.stale_blocker_days = _within(stale_after, "--stale-after", 0, 365, "days from 0 (off) to 365")
    if working_days is not None:
        city.working_days = parse_days(working_days)
    if quiet is not None:
        city.quiet_start, city.quiet_end = parse_quiet(quiet)
    _check_nudges(city)  # as set now, whichever of the settings this command changed
    store.session.add(city)
    store.session.flush()
    return city


@dataclass(frozen=True)
class Archived:
    city: City
    dropped: int  # planned messages not sent
    revoked: int  # join codes that worked until then


def archive_city(store: Store, slug: str, now: datetime) -> Archived:
    """The city leaves the program: nothing more is planned for it or about it, what was planned and not
    yet sent is dropped, and its join codes stop working (whoever joined would be promised reminders);
    coaches' views of all their cities leave it out. Its people, conversations, updates, blockers and
    sessions stay."""
    city = city_of(store, slug)
    if city.archived_at is not None:
        raise AdminError(f"{city.slug} is already archived (city restore {city.slug} brings it back)")
    city.archived_at = now
    store.session.add(city)
    # Replies stay: someone who wrote is waiting for them, and they only answer what was asked.
    planned = store.session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.city_id) == city.id,
            col(OutboxMessage.status) == OutboxStatus.pending,
            col(OutboxMessage.kind) != REPLY_KIND,
        )
        .values(status=OutboxStatus.dropped, last_error=LEFT_PROGRAM)
    )
    codes = [c for c in store.join_codes([city.id]) if join_code_state(c, now) == "active"]
    for code in codes:
        code.revoked_at = now
        store.session.add(code)
    store.session.flush()
    return Archived(city, planned.rowcount, len(codes))


def archived_note(city: City) -> str:
    """What an admin adding to an archived city is told: it takes, and nothing comes of it meanwhile."""
    if city.archived_at is None:
        return ""
    return f" ({city.slug} is archived: nothing is planned for it until `cda-bot city restore {city.slug}`)"


def restore_city(store: Store, slug: str) -> City:
    """The city is back in the program: planned again at the scheduler's next pass."""
    city = city_of(store, slug)
    if city.archived_at is None:
        raise AdminError(f"{city.slug} is not archived")
    city.archived_at, city.plan_at = None, None
    store.session.add(city)
    store.session.flush()
    return city


def _a(role: str) -> str:
    return f"an {role}" if role == Role.admin else f"a {role}"


def remove_person(
    store: Store, who: str, role: Role, now: datetime, city_slugs: list[str] | None = None
) -> str:
    """Take a member, coach or admin off the roster; for a coach with cities named, only those cities.

    Off the roster, their sessions on the coaches' page end and their unopened sign-in links stop
    working, in the same transaction: each request finding no such person is not enough, since the
    same identity added again (a stolen laptop, the coach removed, then re-added) would find the old
    cookie working again for the rest of its hours. Taken off some cities only, a coach stays signed
    in: every request reads their cities afresh."""
    who = identity(who)
    person = store.person(who)
    if person is None:
        raise AdminError(f"{who} is not on the roster")
    if person.role != role:
        raise AdminError(f"{who} is {_a(person.role)}, not {_a(role)}")
    if city_slugs:
        if person.all_cities:
            raise AdminError(
                f"{who} coaches all cities: remove the coach, then add it for the cities to keep"
            )
        cities = _distinct([city_of(store, slug) for slug in city_slugs])
        coached = set(store.coached_city_ids(person))
        for city in cities:
            if city.id not in coached:
                raise AdminError(f"{who} does not coach {city.slug}")
            link = store.session.get(CoachCity, (person.id, city.id))
            store.session.delete(link)
        store.session.flush()
        return f"{who} no longer coaches {', '.join(c.slug for c in cities)}"
    store.remove_person(person)
    ended = dashboard.revoke(store, who, now)
    signed_out = f"; {ended} session{'s' if ended != 1 else ''} on the coaches' page ended" if ended else ""
    return f"removed {person.role} {who} (what they posted stays{signed_out})"


def unbind(store: Store, conversation: str) -> City:
    conversation = identity(conversation)
    binding = store.session.exec(
        select(ChannelBinding).where(ChannelBinding.conversation == conversation)
    ).first()
    if binding is None:
        raise AdminError(f"{conversation} is not bound to any city")
    city = store.city(binding.city_id)
    assert city is not None
    store.session.delete(binding)
    store.session.flush()
    return city


def remove_session(store: Store, city_slug: str, session_id: int) -> CoachingSession:
    city = city_of(store, city_slug)
    session = store.session.get(CoachingSession, session_id)
    if session is None or session.city_id != city.id:
        raise AdminError(
            f"{city.slug} has no session #{session_id} (see `cda-bot session list --city {city.slug}`)"
        )
    store.session.delete(session)
    store.session.flush()
    return session


# -- join codes ---------------------------------------------------------------------------------------
# No 0/O, 1/I/L: a code is read off a screen or a slide and typed on a phone.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
DEFAULT_CODE_DAYS = 14


def new_code() -> str:
    """Eight characters (40 bits): guessing one by messaging the bot is hopeless."""
    letters = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def add_join_code(
    store: Store, city_slug: str, now: datetime, days: int = DEFAULT_CODE_DAYS, uses: int | None = None
) -> JoinCode:
    city = city_of(store, city_slug)
    if city.archived_at is not None:
        raise AdminError(f"{city.slug} is archived: `cda-bot city restore {city.slug}` before a join code")
    days = _within(days, "--expires", 1, 366, "1 to 366 days")
    if uses is not None:
        uses = _within(uses, "--uses", 1, 10_000, "1 to 10000 people")
    assert city.id is not None
    return store.add_join_code(
        JoinCode(
            code=new_code(),
            city_id=city.id,
            expires_at=now + timedelta(days=days),
            max_uses=uses,
            created_at=now,
        )
    )


def join_code_state(code: JoinCode, now: datetime) -> str:
    if code.revoked_at is not None:
        return "revoked"
    if code.expires_at <= now:
        return "expired"
    if code.max_uses is not None and code.uses >= code.max_uses:
        return "used up"
    return "active"


def revoke_join_code(store: Store, text: str, now: datetime) -> JoinCode:
    code = store.join_code(text.strip().upper())
    if code is None:
        raise AdminError(f"no join code '{text}' (see `cda-bot city join-codes`)")
    if code.revoked_at is not None:
        raise AdminError(f"join code {code.code} was revoked already")
    code.revoked_at = now
    store.session.add(code)
    store.session.flush()
    return code
