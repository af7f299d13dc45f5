"""What coaches and members read: status, quiet cities, digest, lists."""

from datetime import datetime, timedelta

from sqlalchemy import event

from bot.core.i18n import translator
from handlers.status import DigestData, digest_section
from store import views
from store.models import Update
from store.views import CityFigures, Place, SessionRow
from tests.conftest import NOW, TestBot


def test_status_of_one_city_has_every_field(world: TestBot) -> None:
    (reply,) = world.send("console:a1", "/cda status")
    assert reply.title == "Status — Alpha"
    assert {f.label: f.value for f in reply.fields} == {
        "Phase": "Learning Loop 2: Solution Build",
        "Last update": "Sat 28 Nov 2026, 06:00 CST (today)",
        "Updates in 7 days": "1",
        "Open blockers": "1",
        "Next session": "ALPHA session: Tue 1 Dec 2026, 10:00–11:00 CST (in 3 days)",
    }


def test_status_of_several_cities_is_a_line_each(world: TestBot) -> None:
    world.say("console:b1", "update: second beta update")
    (reply,) = world.send("console:coach-all", "/cda status")
    assert reply.title == "Status — 3 cities"
    assert [item.split(" — ")[0] for item in reply.items] == ["Alpha", "Beta", "Gamma"]
    assert "2 updates in 7 days" in reply.items[1] and "1 open blocker" in reply.items[1]
    assert "Capacity-building pathway" in reply.items[2]  # Gamma is on the capacity pathway


def test_updates_counted_in_7_days_leave_older_ones_out(world: TestBot) -> None:
    world.clock.set(world.clock.now() + timedelta(days=8))
    world.say("console:a1", "update: fresh")
    reply = world.say("console:a1", "/cda status")
    assert "Updates in 7 days: 1" in reply and "Last update: Sun 6 Dec 2026" in reply
    assert "ALPHA-UPDATE-TEXT" not in world.say("console:a1", "/cda updates")
    assert "ALPHA-UPDATE-TEXT" in world.say("console:a1", "/cda updates 30")


def test_quiet_lists_cities_without_recent_updates(world: TestBot) -> None:
    assert "Every city you coach has posted" in world.say("console:coach-all", "/cda quiet")
    world.clock.set(world.clock.now() + timedelta(days=10))
    world.say("console:b1", "update: still going")
    reply = world.say("console:coach-all", "/cda quiet")
    assert "Alpha: last update Sat 28 Nov 2026" in reply and "Gamma" in reply and "Beta" not in reply
    assert "posted an update in the last 30 days" in world.say("console:coach-all", "/cda quiet 30")


def test_blockers_all_shows_resolved_ones_too(world: TestBot) -> None:
    world.say("console:a1", "/cda resolve 1 fixed")
    assert "No open blockers for Alpha" in world.say("console:a1", "/cda blockers")
    assert "#1 resolved Sat 28 Nov 2026" in world.say("console:a1", "/cda blockers all")


def test_digest_covers_each_coached_city(world: TestBot) -> None:
    reply = world.say("console:coach-ab", "/cda digest")
    assert "*Alpha* — 1 update this week" in reply and "*Beta* — 1 update this week" in reply
    assert "ALPHA-BLOCKER-TEXT" in reply and "Next session: BETA session: Wed 2 Dec 2026" in reply
    assert "Gone quiet" not in reply
    world.clock.set(world.clock.now() + timedelta(days=8))
    assert "Gone quiet (no update in 7 days): Alpha, Beta" in world.say("console:coach-ab", "/cda digest")


def test_counts_are_grouped_and_the_digest_counts_every_update(world: TestBot) -> None:
    with world.store() as store:
        alpha = store.city_by_slug("alpha")
        assert alpha is not None and alpha.id is not None
        store.session.add_all(
            Update(city_id=alpha.id, author="console:a1", platform="console", text=f"#{i}", created_at=NOW)
            for i in range(1200)
        )
    assert "Updates in 7 days: 1,201" in world.say("console:a1", "/cda status")
    assert "1,201 updates in 7 days" in world.say("console:coach-ab", "/cda status")
    # The digest shows five of Alpha's updates but counts them all (and Beta's update, a blocker each).
    digest = world.say("console:coach-ab", "/cda digest")
    assert "*Alpha* — 1,201 updates this week" in digest and digest.count("  • #") == 5 + 1 + 2
    assert world.say("console:coach-a", "/cda export updates").startswith("1,201 updates from 1 city, as CSV")


def test_a_digest_section_names_the_next_session_in_each_citys_own_zone() -> None:
    # Cities with the same series of sessions share one worked-out line only where their zone is the same.
    weekly = dict(title="Check-in", start_local=datetime(2026, 11, 3, 10, 0), duration_min=60)
    series = dict(rrule="FREQ=WEEKLY", until_local=None, exdates=[])
    places = [
        Place(1, "Austin", "America/Chicago"),
        Place(2, "Leeds", "Europe/London"),
        Place(3, "Dallas", "America/Chicago"),
    ]
    data = DigestData(
        figures={p.id: CityFigures(None, 0, 0) for p in places},
        updates={},
        blockers={},
        sessions={p.id: [SessionRow(10 + p.id, p.id, **weekly, **series)] for p in places},
    )
    sections = [digest_section(translator("en"), data, p, NOW) for p in places]
    assert "Next session: Check-in: Tue 1 Dec 2026, 10:00–11:00 CST (in 3 days)" in sections[0]
    assert "Next session: Check-in: Tue 1 Dec 2026, 10:00–11:00 GMT (in 3 days)" in sections[1]
    assert sections[2].endswith(sections[0].split("\n")[-1]) and len(data.next_lines) == 2


def test_whereabouts_reads_the_speaker_and_the_conversation_city_apart(world: TestBot) -> None:
    """One statement answers who speaks and where: each half must come from its own row, whether
    the other half is there or not."""
    channel = "slack:T0001:C0001"  # bound to Alpha
    with world.store() as store:
        beta_member_in_alpha = views.whereabouts(store, "console:b1", channel)
        stranger_in_alpha = views.whereabouts(store, "slack:T0001:UNKNOWN", channel)
        member_direct = views.whereabouts(store, "console:g1", None)
        member_unbound = views.whereabouts(store, "console:a1", "slack:T0001:CNOTBOUND")
        nobody_nowhere = views.whereabouts(store, "slack:T0001:UNKNOWN", "slack:T0001:CNOTBOUND")
        coach = views.whereabouts(store, "console:coach-ab", channel)
    assert beta_member_in_alpha.person is not None and beta_member_in_alpha.person.name == "Bob Beta"
    assert beta_member_in_alpha.city is not None and beta_member_in_alpha.city.slug == "beta"
    assert beta_member_in_alpha.channel_city is not None and beta_member_in_alpha.channel_city.slug == "alpha"
    assert beta_member_in_alpha.channel_city.zone == "America/Chicago"  # every column, not only the id
    assert stranger_in_alpha.person is None and stranger_in_alpha.city is None
    assert stranger_in_alpha.channel_city is not None and stranger_in_alpha.channel_city.slug == "alpha"
    assert member_direct.city is not None and member_direct.city.language == "es"
    assert member_direct.channel_city is None
    assert member_unbound.city is not None and member_unbound.city.slug == "alpha"
    assert member_unbound.channel_city is None
    assert nobody_nowhere == views.Whereabouts(None, None, None)
    assert coach.person is not None and coach.person.role == "coach" and coach.city is None
    assert coach.channel_city is not None and coach.channel_city.slug == "alpha"
    with world.store() as store:
        slugs = {c.slug for c in views.cities(store, coach.accessible or [])}
    assert slugs == {"alpha", "beta"}


def test_whereabouts_of_a_batch_are_each_pairs_own_in_order_in_one_statement(world: TestBot) -> None:
    """A batch of messages asks once; each answer is the one its pair gets alone, repeats included."""
    channel = "slack:T0001:C0001"  # bound to Alpha
    asked = [
        ("console:b1", channel),
        ("slack:T0001:UNKNOWN", channel),
        ("console:g1", None),
        ("console:coach-ab", channel),
        ("console:a1", "slack:T0001:CNOTBOUND"),
        ("console:coach-all", None),
        ("console:b1", channel),
        ("slack:T0001:UNKNOWN", "slack:T0001:CNOTBOUND"),
    ]
    statements: list[str] = []
    with world.store() as store:
        alone = [views.whereabouts(store, who, where) for who, where in asked]
        event.listen(store.session.get_bind(), "before_cursor_execute", lambda *a: statements.append(a[2]))
        together = views.whereabouts_of(store, asked)
    assert len(statements) == 1
    assert together == alone
    assert together[3].accessible is not None and len(together[3].accessible) == 2  # Coach AB's
    assert together[5].accessible is not None and len(together[5].accessible) == 3  # a coach of all
    assert together[0].accessible is None  # a member sees their own city, read with them
