"""Who the bot knows: cities, members, coaches, admins, and conversations bound to a city."""

from datetime import datetime
from typing import Annotated

import typer

from bot import admin
from bot.cli.common import Db, admin_write, counted, engine_for, fail, instant_when, warn
from bot.cli.listing import AsJson, Shown, Value, print_rows
from bot.core.clock import SystemClock
from store.models import Role
from store.repo import Store, open_store

city_app = typer.Typer(help="Cities in the program.", no_args_is_help=True)
member_app = typer.Typer(help="City team members.", no_args_is_help=True)
coach_app = typer.Typer(help="Coaches and the cities they coach.", no_args_is_help=True)
admin_app = typer.Typer(help="Admins of the bot.", no_args_is_help=True)


@city_app.command("add")
def city_add(
    slug: str,
    name: Annotated[str, typer.Option("--name")],
    tz: Annotated[str, typer.Option("--tz", help="IANA zone, e.g. America/Bogota")],
    country: Annotated[str | None, typer.Option("--country")] = None,
    pathway: Annotated[str | None, typer.Option("--pathway", help="implementation or capacity")] = None,
    lang: Annotated[str, typer.Option("--lang", help="en, es or pt")] = "en",
    db: Db = None,
) -> None:
    """Add a city."""

    def action(store: Store) -> str:
        city = admin.add_city(store, slug, name, tz, SystemClock().now(), country, pathway, lang)
        return f"added city {city.slug} ({city.name}, {city.zone})"

    admin_write(db, action)


@city_app.command("list")
def city_list(db: Db = None, as_json: AsJson = False) -> None:
    """List the cities with their people and bindings.

    Columns (tab-separated when piped): slug, name, zone, country, language, pathway, members, coaches,
    bound conversations, and when the city was archived (empty: in the program)."""
    engine = engine_for(db)
    rows: list[list[Value]] = []
    with open_store(engine) as store:
        for city in store.cities():
            assert city.id is not None
            rows.append(
                [
                    city.slug,
                    city.name,
                    city.zone,
                    city.country,
                    city.language,
                    city.pathway,
                    len(store.members_of(city.id)),
                    len(store.coaches_of(city.id)),
                    store.bindings_of(city.id),
                    Shown(instant_when(city.archived_at), city.archived_at.isoformat())
                    if city.archived_at
                    else None,
                ]
            )
    columns = ["slug", "name", "zone", "country", "language", "pathway", "members", "coaches", "bound"]
    columns.append("archived")
    print_rows(columns, rows, as_json)


@city_app.command("set")
def city_set(
    slug: str,
    reminders: Annotated[
        str | None, typer.Option("--reminders", help="Before each session, e.g. 24h,1h (none: off)")
    ] = None,
    nudge_after: Annotated[
        int | None, typer.Option("--nudge-after", help="Days without update (0: off)")
    ] = None,
    nudge_hour: Annotated[int | None, typer.Option("--nudge-hour", help="Local hour for nudges")] = None,
    working_days: Annotated[
        str | None, typer.Option("--working-days", help="e.g. mon-fri or mon,tue,thu")
    ] = None,
    quiet: Annotated[str | None, typer.Option("--quiet", help="Quiet hours, e.g. 20-8 (none: off)")] = None,
    stale_after: Annotated[
        int | None, typer.Option("--stale-after", help="Days before coaches hear of an open blocker (0: off)")
    ] = None,
    db: Db = None,
) -> None:
    """Change what the scheduler sends a city."""
    warnings: list[str] = []

    def action(store: Store) -> str:
        found = admin.set_city_schedule(
            store, slug, reminders, nudge_after, nudge_hour, working_days, quiet, stale_after
        )
        late = admin.late_nudges(found)
        if late:
            warnings.append(late)
        # 0 days turns each off: "nudge after 0 days" read as nudging at once.
        nudges = (
            f"nudge after {found.nudge_after_days} days at {found.nudge_hour}:00"
            if found.nudge_after_days > 0
            else "nudges off"
        )
        stale = (
            f"blockers flagged after {found.stale_blocker_days} days"
            if found.stale_blocker_days > 0
            else "blockers never flagged"
        )
        return (
            f"{found.slug}: reminders {admin.describe_offsets(found.reminder_offsets)}, {nudges}, "
            f"working days {admin.describe_days(found.working_days)}, "
            f"quiet {admin.describe_quiet(found.quiet_start, found.quiet_end)}, {stale}"
        )

    admin_write(db, action)
    for warning in warnings:  # after the change is committed: a refused one warns of nothing
        warn(warning)


@city_app.command("archive")
def city_archive(
    slugs: Annotated[list[str], typer.Argument(metavar="SLUG...", help="One city or several")],
    db: Db = None,
) -> None:
    """A city leaves the program (its cohort is over, or it withdrew): no more reminders, nudges,
    digests or blocker notices for it or about it, its join codes stop working, and coaches' views of
    all their cities leave it out. Its team can still write, a coach can still name it, and its history
    stays; `city restore` undoes it (but for the join codes). Several cities (a cohort's end) go
    together or not at all: one unknown or already archived, and none is."""

    def action(store: Store) -> str:
        lines = []
        for slug in slugs:
            done = admin.archive_city(store, slug, SystemClock().now())
            told = [f"archived city {done.city.slug} ({done.city.name})"]
            if done.dropped:
                told.append(f"{counted(done.dropped, 'planned message')} not sent")
            if done.revoked:
                told.append(f"{counted(done.revoked, 'join code')} revoked")
            lines.append("; ".join(told))
        return "\n".join(lines)

    admin_write(db, action)


@city_app.command("restore")
def city_restore(
    slugs: Annotated[list[str], typer.Argument(metavar="SLUG...", help="One city or several")],
    db: Db = None,
) -> None:
    """Bring archived cities back into the program: planned again at the scheduler's next pass."""

    def action(store: Store) -> str:
        cities = [admin.restore_city(store, slug) for slug in slugs]
        return "\n".join(f"restored city {city.slug} ({city.name})" for city in cities)

    admin_write(db, action)


@city_app.command("join-code")
def city_join_code(
    slug: str,
    expires: Annotated[
        int, typer.Option("--expires", help="Days it works (1 to 366)")
    ] = admin.DEFAULT_CODE_DAYS,
    uses: Annotated[int | None, typer.Option("--uses", help="How many numbers may join with it")] = None,
    db: Db = None,
) -> None:
    """Make a code a city's team sends from WhatsApp (`join CODE`) to join the city's roster."""

    def action(store: Store) -> str:
        code = admin.add_join_code(store, slug, SystemClock().now(), expires, uses)
        city = store.city(code.city_id)
        assert city is not None
        limit = f", for {uses} {'number' if uses == 1 else 'numbers'}" if uses else ""
        return (
            f"{code.code}\n"
            f"join code for {city.slug}: send `join {code.code}` to the bot's WhatsApp number; works until "
            f"{instant_when(code.expires_at, city.zone)}{limit} "
            f"(revoke: cda-bot city revoke-code {code.code})"
        )

    admin_write(db, action)


@city_app.command("join-codes")
def city_join_codes(
    slug: Annotated[str | None, typer.Argument(help="Only this city's codes")] = None,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """List join codes.

    Columns (tab-separated when piped): code, city, state (active, expired, used up, revoked), uses,
    limit, expires (in the city's time; ISO-8601 UTC with --json)."""
    engine = engine_for(db)
    now = SystemClock().now()
    rows: list[list[Value]] = []
    with open_store(engine) as store:
        cities = {c.id: c for c in store.cities()}
        ids = None
        if slug is not None:
            try:
                ids = [admin.city_of(store, slug).id]
            except admin.AdminError as error:
                raise fail(str(error)) from None
        for code in store.join_codes(ids):  # type: ignore[arg-type]
            city = cities[code.city_id]
            rows.append(
                [
                    code.code,
                    city.slug,
                    admin.join_code_state(code, now),
                    code.uses,
                    code.max_uses,
                    Shown(instant_when(code.expires_at, city.zone), code.expires_at.isoformat()),
                ]
            )
    print_rows(["code", "city", "state", "uses", "limit", "expires"], rows, as_json)


@city_app.command("revoke-code")
def city_revoke_code(code: str, db: Db = None) -> None:
    """Stop a join code from working (numbers that joined with it stay on the roster)."""

    def action(store: Store) -> str:
        revoked = admin.revoke_join_code(store, code, SystemClock().now())
        return f"revoked join code {revoked.code}"

    admin_write(db, action)


@member_app.command("add")
def member_add(
    identity: str,
    city: Annotated[str, typer.Option("--city")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    db: Db = None,
) -> None:
    """Add a member of a city's team, or move a member of another city to this one."""

    def action(store: Store) -> str:
        before = admin.city_of_member(store, identity)
        person = admin.add_member(store, identity, city, SystemClock().now(), name)
        found = admin.city_of(store, city)
        slug, note = found.slug, admin.archived_note(found)  # as stored: `--city Bogota` finds bogota
        if before is not None:
            return f"moved member {person.identity} to {slug} (was {before.slug}){note}"
        return f"added member {person.identity} to {slug}{note}"

    admin_write(db, action)


@member_app.command("remove")
def member_remove(identity: str, db: Db = None) -> None:
    """Take a member off the roster (their updates and blockers stay)."""
    admin_write(db, lambda store: admin.remove_person(store, identity, Role.member, SystemClock().now()))


@member_app.command("list")
def member_list(
    city: Annotated[str | None, typer.Option("--city", help="Only this city's members")] = None,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """List the members, by city: who is on each team, and who said `stop`.

    Columns (tab-separated when piped): identity, name, city, added, stopped (when they said `stop`:
    nothing unprompted goes to them)."""
    engine = engine_for(db)
    with open_store(engine) as store:
        try:
            cities = [admin.city_of(store, city)] if city else store.cities()
        except admin.AdminError as error:
            raise fail(str(error)) from None
        rows: list[list[Value]] = [
            [person.identity, person.name, found.slug, _when(person.created_at), _when(person.stopped_at)]
            for found in cities
            if found.id is not None
            for person in store.members_of(found.id)
        ]
    print_rows(["identity", "name", "city", "added", "stopped"], rows, as_json)


def _when(instant: datetime | None) -> Shown | None:
    return Shown(instant_when(instant), instant.isoformat()) if instant is not None else None


@coach_app.command("list")
def coach_list(db: Db = None, as_json: AsJson = False) -> None:
    """List the coaches and admins with the cities they see.

    Columns (tab-separated when piped): identity, name, role, cities (slugs, or `all`), zone (of the
    Monday digest), stopped (when they said `stop`)."""
    engine = engine_for(db)
    with open_store(engine) as store:
        slugs = {c.id: c.slug for c in store.cities()}
        rows: list[list[Value]] = []
        for person in store.coaches() + store.admins():
            every = person.all_cities or person.role == Role.admin
            cities = (
                ["all"] if every else sorted(slugs[i] for i in store.coached_city_ids(person) if i in slugs)
            )
            rows.append(
                [person.identity, person.name, person.role, cities, person.zone, _when(person.stopped_at)]
            )
    print_rows(["identity", "name", "role", "cities", "zone", "stopped"], rows, as_json)


@coach_app.command("add")
def coach_add(
    identity: str,
    city: Annotated[
        list[str] | None, typer.Option("--city", help="Repeat for several; none = all cities")
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="The coach's zone, for the Monday digest")] = None,
    db: Db = None,
) -> None:
    """Add a coach of the listed cities (of all cities when none is listed)."""

    def action(store: Store) -> str:
        person, cities = admin.add_coach(store, identity, city or [], SystemClock().now(), name, tz)
        scope = ", ".join(c.slug for c in cities) if cities else "all cities"
        return f"{person.identity} coaches {scope}"

    admin_write(db, action)


@coach_app.command("remove")
def coach_remove(
    identity: str,
    city: Annotated[
        list[str] | None, typer.Option("--city", help="Only these cities; none: the coach")
    ] = None,
    db: Db = None,
) -> None:
    """Take a coach off some cities, or off the roster."""
    admin_write(db, lambda store: admin.remove_person(store, identity, Role.coach, SystemClock().now(), city))


@admin_app.command("add")
def admin_add(
    identity: str,
    name: Annotated[str | None, typer.Option("--name")] = None,
    db: Db = None,
) -> None:
    """Add an admin (sees every city, like a coach of all)."""

    def action(store: Store) -> str:
        return f"added admin {admin.add_admin(store, identity, SystemClock().now(), name).identity}"

    admin_write(db, action)


@admin_app.command("remove")
def admin_remove(identity: str, db: Db = None) -> None:
    """Take an admin off the roster (what they posted stays; their coaches'-page sessions end)."""
    admin_write(db, lambda store: admin.remove_person(store, identity, Role.admin, SystemClock().now()))


def bind(
    conversation: Annotated[str, typer.Argument(help="e.g. slack:T0001:C0001")],
    city: Annotated[str, typer.Option("--city")],
    db: Db = None,
) -> None:
    """Bind a chat conversation to a city: whoever speaks there counts as its member."""

    def action(store: Store) -> str:
        binding, before = admin.bind(store, conversation, city, SystemClock().now())
        # Compared by id: `--city Bogota` is the city bogota, not a move from it.
        moved = f" (was {before.slug})" if before and before.id != binding.city_id else ""
        found = admin.city_of(store, city)
        return f"bound {binding.conversation} to {found.slug}{moved}{admin.archived_note(found)}"

    admin_write(db, action)


def unbind(conversation: str, db: Db = None) -> None:
    """Unbind a conversation from its city."""
    # The conversation as stored: `slack:t0001:c0001` finds slack:T0001:C0001.
    admin_write(
        db,
        lambda store: f"unbound {admin.identity(conversation)} from {admin.unbind(store, conversation).slug}",
    )
