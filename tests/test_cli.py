"""The command line: admin commands change all or nothing, errors are one clear line, lists give whole
values (tab-separated when piped, or JSON), `say` and `demo`."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import SQLModel, select
from typer.testing import CliRunner

from bot.cli import app
from bot.cli.listing import print_rows
from store.models import City, CoachingSession, Person
from store.repo import open_store
from tests.conftest import due_message

runner = CliRunner()


def run(db_url: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--db", db_url], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as connection:
        return {
            table.name: sorted(map(tuple, connection.execute(table.select()).all()), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


@pytest.fixture
def seeded(db_url: str) -> str:
    for args in (
        [
            "city",
            "add",
            "bogota",
            "--name",
            "Bogotá",
            "--tz",
            "America/Bogota",
            "--country",
            "CO",
            "--lang",
            "es",
            "--pathway",
            "implementation",
        ],
        ["member", "add", "whatsapp:+573001112233", "--city", "bogota", "--name", "Camila"],
        ["coach", "add", "slack:T0001:U0C0ACH", "--city", "bogota"],
        ["bind", "slack:T0001:C0001", "--city", "bogota"],
        [
            "session",
            "add",
            "--city",
            "bogota",
            "--start",
            "2026-12-01T10:00",
            "--rrule",
            "FREQ=WEEKLY;BYDAY=TU",
            "--until",
            "2027-03-30",
            "--title",
            "Coaching",
        ],
    ):
        code, _out, err = run(db_url, *args)
        assert code == 0, err
    return db_url


def test_admin_commands_write_what_they_say(seeded: str, engine: Engine) -> None:
    from store.repo import open_store

    with open_store(engine) as store:
        city = store.city_by_slug("bogota")
        assert city is not None and (city.name, city.zone, city.language, city.country) == (
            "Bogotá",
            "America/Bogota",
            "es",
            "CO",
        )
        member = store.person("whatsapp:+573001112233")
        assert member is not None and member.city_id == city.id and member.role == "member"
        coach = store.person("slack:T0001:U0C0ACH")
        assert coach is not None and store.coached_city_ids(coach) == [city.id]
        assert store.bound_city("slack:T0001:C0001") == city
        (session,) = store.sessions_of(city.id)  # type: ignore[arg-type]
        assert (session.rrule, session.until_local.isoformat()) == (  # type: ignore[union-attr]
            "FREQ=WEEKLY;BYDAY=TU",
            "2027-03-30T23:59:59",
        )


LIMA = ["city", "add", "lima", "--name", "Lima", "--tz", "America/Lima"]
SESSION = ["session", "add", "--city", "bogota", "--start", "2026-12-01T10:00"]
WEEKLY = [*SESSION, "--rrule", "FREQ=WEEKLY"]
# fmt: off
BAD = [
    (["city", "add", "bogota", "--name", "B", "--tz", "America/Bogota"], "city 'bogota' already exists"),
    (["city", "add", "lima", "--name", "Lima", "--tz", "Lima/Peru"], "unknown time zone 'Lima/Peru'"),
    # Names in the zone database that are no place: the server's own zone, a placeholder, copies.
    ([*LIMA[:-1], "localtime"], "unknown time zone 'localtime': use an IANA name such as America/Bogota"),
    ([*LIMA[:-1], "Factory"], "unknown time zone 'Factory'"),
    ([*LIMA[:-1], "posix/America/Lima"], "unknown time zone 'posix/America/Lima'"),
    ([*LIMA[:-1], "right/America/Lima"], "unknown time zone 'right/America/Lima'"),
    (["coach", "add", "console:c2", "--tz", "localtime"], "unknown time zone 'localtime'"),
    (["city", "add", "Lima City!", "--name", "Lima", "--tz", "America/Lima"], "bad slug"),
    ([*LIMA, "--lang", "fr"], "bad --lang 'fr'"),
    ([*LIMA, "--pathway", "fast"], "bad --pathway"),
    ([*LIMA, "--country", "PER"], "bad --country"),
    (["member", "add", "whatsapp:3001112233", "--city", "bogota"], "not a valid whatsapp identity"),
    (["member", "add", "signal:+5730011", "--city", "bogota"], "is not an identity"),
    (["member", "add", "console:new", "--city", "atlantis"], "unknown city 'atlantis' (known: bogota)"),
    (["member", "add", "whatsapp:+573001112233", "--city", "bogota"], "already on the roster as member"),
    (["coach", "add", "console:c2", "--city", "bogota", "--city", "atlantis"], "unknown city 'atlantis'"),
    # A person listed, and greeted, as nobody.
    (["member", "add", "console:new", "--city", "bogota", "--name", ""], "--name must not be empty"),
    (["member", "add", "console:new", "--city", "bogota", "--name", "  "], "--name must not be empty"),
    (["coach", "add", "console:c2", "--name", " "], "--name must not be empty"),
    (["coach", "add", "slack:T0001:U0C0ACH", "--name", ""], "--name must not be empty"),
    (["admin", "add", "console:ops", "--name", "\t"], "--name must not be empty"),
    (["coach", "add", "whatsapp:+573001112233"], "already on the roster as member"),
    (["bind", "slack:T0001:C0002", "--city", "atlantis"], "unknown city 'atlantis'"),
    (["bind", "C0002", "--city", "bogota"], "is not an identity"),
    (["session", "add", "--city", "bogota", "--start", "next tuesday"], "bad --start 'next tuesday'"),
    (["session", "add", "--city", "bogota", "--start", "2026-13-01T10:00"], "bad --start"),
    (["session", "add", "--city", "atlantis", "--start", "2026-12-01T10:00"], "unknown city 'atlantis'"),
    (WEEKLY, "needs --until"),
    ([*SESSION, "--rrule", "FREQ=SOMETIMES", "--until", "2027-01-01"], "bad --rrule"),
    ([*WEEKLY, "--until", "2026-11-01"], "--until is before --start"),
    ([*WEEKLY, "--until", "soon"], "bad --until 'soon'"),
    ([*SESSION, "--until", "2027-01-01"], "--until goes with --rrule"),
    ([*SESSION, "--duration", "0"], "bad --duration 0"),
    # Dates at datetime's ends: each was a traceback, or a session every later list, export and
    # scheduler pass raised OverflowError on.
    ([*SESSION[:-1], "9999-12-31T23:30"], "--start 9999-12-31 is out of range"),
    ([*SESSION[:-1], "9999-12-31T10:00"], "--start 9999-12-31 is out of range"),
    ([*SESSION[:-1], "0001-01-01T00:00Z"], "--start 0001-01-01 is out of range"),
    ([*WEEKLY, "--until", "9999-12-31"], "--until 9999-12-31 is out of range"),
    ([*WEEKLY, "--until", "9999-12-31T23:00-05:00"], "--until 9999-12-31 is out of range"),
    (["session", "skip", "--city", "bogota", "--date", "9999-12-31"], "bogota has no session on 9999-12-31"),
    (["session", "skip", "--city", "bogota", "--date", "0001-01-01"], "bogota has no session on 0001-01-01"),
    # Rules dateutil reads, on which session list and every scheduler pass then raised (a zero step,
    # a step past datetime's ends), or calendar export (a COUNT iCalendar cannot write).
    (
        [*SESSION, "--rrule", "FREQ=WEEKLY;INTERVAL=0", "--until", "2027-01-01"],
        "INTERVAL must be a whole number from 1 to 1000",
    ),
    ([*SESSION, "--rrule", "FREQ=WEEKLY;INTERVAL=99999999999;COUNT=2"], "INTERVAL must be"),
    ([*SESSION, "--rrule", "FREQ=WEEKLY;COUNT=999999999999"], "COUNT must be a whole number from 1 to"),
    ([*SESSION, "--rrule", "FREQ=WEEKLY;COUNT=0"], "COUNT must be a whole number from 1 to"),
    # RFC 5545: UNTIL and COUNT must not both occur (dateutil ended the series at the earlier one).
    ([*SESSION, "--rrule", "FREQ=WEEKLY;COUNT=3", "--until", "2027-01-01"], "--rrule has COUNT and --until"),
    ([*SESSION, "--rrule", "FREQ=WEEKLY;COUNT=3;UNTIL=20270101"], "--rrule has COUNT and UNTIL: a series"),
    # Thousands of starts a month, which every scheduler pass would work through for every city.
    ([*SESSION, "--rrule", "FREQ=SECONDLY;COUNT=100000"], "a session repeats once a day at most"),
    ([*SESSION, "--rrule", "FREQ=HOURLY", "--until", "2027-01-01"], "a session repeats once a day at most"),
    # Nudges go from the nudge hour to midnight outside quiet hours (20-8): these left no such hour,
    # and no nudge ever went out. Either setting may be the one that closes it.
    (["city", "set", "bogota", "--nudge-hour", "21"], "no nudge would ever go out: nudges go from the"),
    (["city", "set", "bogota", "--quiet", "10-8"], "nudge hour (10:00) to midnight, all of it in quiet"),
]
# fmt: on


@pytest.mark.parametrize(
    ("args", "message"), BAD, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(BAD)]
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    seeded: str, engine: Engine, args: list[str], message: str
) -> None:
    before = snapshot(engine)
    code, _out, err = run(seeded, *args)
    assert code == 1
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(engine) == before


def test_session_start_with_offset_is_read_in_the_citys_zone(seeded: str, engine: Engine) -> None:
    code, out, _ = run(seeded, "session", "add", "--city", "bogota", "--start", "2026-12-05T15:00:00Z")
    assert (code, out) == (0, "added session #2 for bogota: Sat 5 Dec 2026, 10:00 UTC-05\n")
    with engine.connect() as connection:
        starts = connection.execute(select(CoachingSession.start_local)).scalars().all()
    assert [s.isoformat() for s in sorted(starts)] == ["2026-12-01T10:00:00", "2026-12-05T10:00:00"]


@pytest.mark.parametrize(
    ("until", "stored"),
    [
        ("2027-03-30T10:00+09:00", "2027-03-29T20:00:00"),  # the offset was dropped: 10:00 in Bogotá
        ("2027-03-30T15:00Z", "2027-03-30T10:00:00"),
        ("2027-03-30T10:00", "2027-03-30T10:00:00"),  # no offset: the city's own time
    ],
)
def test_session_until_with_offset_is_read_in_the_citys_zone(
    seeded: str, engine: Engine, until: str, stored: str
) -> None:
    code, _out, err = run(seeded, *WEEKLY, "--until", until)
    assert code == 0, err
    with engine.connect() as connection:
        ends = connection.execute(select(CoachingSession.until_local).where(CoachingSession.id == 2))
        assert [end.isoformat() for end in ends.scalars()] == [stored]


def test_what_a_command_says_names_the_city_as_stored_however_it_was_typed(seeded: str) -> None:
    """A slug is found in any case; what is said back is the city's slug, and binding a conversation
    to the city it is bound to already is no move."""
    assert run(seeded, "bind", "slack:T0001:C0001", "--city", "Bogota")[:2] == (
        0,
        "bound slack:T0001:C0001 to bogota\n",
    )
    said = run(seeded, "member", "add", "console:new", "--city", "BOGOTA")[1]
    assert said == "added member console:new to bogota\n"
    said = run(seeded, "session", "add", "--city", "BOGOTA", "--start", "2026-12-05T10:00")[1]
    assert said == "added session #2 for bogota: Sat 5 Dec 2026, 10:00 UTC-05\n"
    assert run(seeded, "session", "remove", "2", "--city", "BOGOTA")[1] == "removed session #2 of bogota\n"
    assert run(seeded, "unbind", "slack:t0001:c0001")[1] == "unbound slack:T0001:C0001 from bogota\n"


def test_a_city_is_found_with_the_spaces_around_it_trimmed_as_city_add_trims_them(seeded: str) -> None:
    assert run(seeded, "member", "add", "console:new", "--city", " bogota ")[1] == (
        "added member console:new to bogota\n"
    )
    said = run(seeded, "session", "add", "--city", " Bogota", "--start", "2026-12-05T10:00")[1]
    assert said == "added session #2 for bogota: Sat 5 Dec 2026, 10:00 UTC-05\n"
    assert run(seeded, "city", "set", "bogota ")[1].startswith("bogota: reminders 24h,1h")
    assert run(seeded, "coach", "add", "console:c2", "--city", " bogota")[1] == "console:c2 coaches bogota\n"
    assert run(seeded, "member", "list", "--city", " bogota")[1].count("\tbogota\t") == 2
    code, _out, err = run(seeded, "bind", "slack:T0001:C0002", "--city", " atlantis ")
    assert code == 1 and "unknown city 'atlantis' (known: bogota)" in err


def test_coach_add_without_city_coaches_all_and_again_adds_cities(seeded: str, engine: Engine) -> None:
    assert run(seeded, "coach", "add", "console:lead")[1].strip() == "console:lead coaches all cities"
    run(seeded, "city", "add", "quito", "--name", "Quito", "--tz", "America/Guayaquil")
    assert run(seeded, "coach", "add", "slack:T0001:U0C0ACH", "--city", "quito")[0] == 0
    from store.repo import open_store

    with open_store(engine) as store:
        coach = store.person("slack:T0001:U0C0ACH")
        assert coach is not None and len(store.coached_city_ids(coach)) == 2
        lead = store.person("console:lead")
        assert lead is not None and len(store.coached_city_ids(lead)) == 2


def test_a_city_named_twice_is_one_city_to_coach_add_and_coach_remove(seeded: str, engine: Engine) -> None:
    """`--city lima --city Lima` (a list pasted twice): was an IntegrityError traceback."""
    run(seeded, "city", "add", "lima", "--name", "Lima", "--tz", "America/Lima")
    for identity in ("console:new-coach", "slack:T0001:U0C0ACH"):  # a new coach, and one with a city
        code, out, err = run(seeded, "coach", "add", identity, "--city", "lima", "--city", "Lima")
        assert (code, out, err) == (0, f"{identity} coaches lima\n", "")
    code, out, _ = run(seeded, "coach", "remove", "slack:T0001:U0C0ACH", "--city", "lima", "--city", "lima")
    assert (code, out) == (0, "slack:T0001:U0C0ACH no longer coaches lima\n")
    with open_store(engine) as store:
        coach, lima = store.person("slack:T0001:U0C0ACH"), store.city_by_slug("lima")
        assert coach is not None and lima is not None and lima.id not in store.coached_city_ids(coach)


TEAMS_CHANNEL = "teams:72f988bf-86f1-41af-91ab-2d7cd011db47:19:a-long-channel-name@thread.tacv2"


def test_city_list_piped_is_a_tab_separated_line_a_city_with_nothing_cut(seeded: str) -> None:
    assert run(seeded, "bind", TEAMS_CHANNEL, "--city", "bogota")[0] == 0
    code, out, _ = run(seeded, "city", "list")
    assert code == 0
    assert out.splitlines() == [
        f"bogota\tBogotá\tAmerica/Bogota\tCO\tes\timplementation\t1\t1\tslack:T0001:C0001, {TEAMS_CHANNEL}\t"
    ]  # and last, empty: not archived
    code, out, _ = run(seeded, "city", "list", "--json")
    assert json.loads(out) == [
        {
            "slug": "bogota",
            "name": "Bogotá",
            "zone": "America/Bogota",
            "country": "CO",
            "language": "es",
            "pathway": "implementation",
            "members": 1,
            "coaches": 1,
            "bound": ["slack:T0001:C0001", TEAMS_CHANNEL],
            "archived": None,
        }
    ]


def test_member_and_coach_lists_show_who_is_on_each_team_and_who_said_stop(seeded: str) -> None:
    assert run(seeded, "city", "add", "lima", "--name", "Lima", "--tz", "America/Lima")[0] == 0
    assert run(seeded, "member", "add", "console:rosa", "--city", "lima")[0] == 0
    assert run(seeded, "coach", "add", "console:lead", "--city", "lima", "--city", "bogota")[0] == 0
    assert run(seeded, "admin", "add", "console:ops", "--name", "Ops")[0] == 0
    assert run(seeded, "say", "--as", "whatsapp:+573001112233", "stop")[0] == 0
    code, out, _ = run(seeded, "member", "list")
    assert code == 0
    [camila, rosa] = [line.split("\t") for line in out.splitlines()]
    assert camila[:3] == ["whatsapp:+573001112233", "Camila", "bogota"] and camila[4] != ""  # said stop
    assert rosa[:3] == ["console:rosa", "", "lima"] and rosa[4] == ""
    [only] = json.loads(run(seeded, "member", "list", "--city", "lima", "--json")[1])
    assert (only["identity"], only["city"], only["stopped"]) == ("console:rosa", "lima", None)
    code, out, err = run(seeded, "member", "list", "--city", "atlantis")
    assert code == 1 and "unknown city 'atlantis'" in err
    coaches = {row["identity"]: row for row in json.loads(run(seeded, "coach", "list", "--json")[1])}
    assert coaches["console:lead"]["cities"] == ["bogota", "lima"]
    assert coaches["slack:T0001:U0C0ACH"]["cities"] == ["bogota"]
    assert (coaches["console:ops"]["role"], coaches["console:ops"]["cities"]) == ("admin", ["all"])


def test_session_list_gives_whole_rules_and_the_bots_dates(seeded: str) -> None:
    rule = "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR;WKST=SU"
    title = "Coaching with the whole data team\tand the mayor's office"
    added = run(seeded, *SESSION, "--rrule", rule, "--until", "2027-03-31", "--title", title)
    assert added[0] == 0, added[2]
    run(seeded, "session", "skip", "--city", "bogota", "--date", "2026-12-02")
    code, out, _ = run(seeded, "session", "list", "--city", "bogota")
    assert code == 0
    first, second = (line.split("\t") for line in out.splitlines())
    assert first[:5] == ["1", "Coaching", "Tue 1 Dec 2026, 10:00 UTC-05", "60", "FREQ=WEEKLY;BYDAY=TU"]
    assert first[5:8] == ["Tue 30 Mar 2027", "", ""]
    # A tab in a title is written as \t, so that a line stays one row and a field one value.
    assert second[1:7] == [
        "Coaching with the whole data team\\tand the mayor's office",
        "Tue 1 Dec 2026, 10:00 UTC-05",
        "60",
        rule,
        "Wed 31 Mar 2027",
        "Wed 2 Dec 2026",
    ]
    code, out, _ = run(seeded, "session", "list", "--city", "bogota", "--json")
    listed = {row["id"]: row for row in json.loads(out)}
    assert {k: v for k, v in listed[2].items() if k != "next"} == {
        "id": 2,
        "title": title,
        "start": "2026-12-01T10:00:00-05:00",
        "minutes": 60,
        "repeats": rule,
        "until": "2027-03-31",
        "skipped": ["2026-12-02"],
        "uid": None,
    }


def test_reminders_list_gives_whole_errors_and_the_bots_dates(seeded: str, engine: Engine) -> None:
    assert run(seeded, "city", "add", "denver", "--name", "Denver", "--tz", "America/Denver")[0] == 0
    error = "Slack said channel_not_found for C0999 after 6 tries; " + "the channel was archived. " * 6
    with open_store(engine) as store:
        denver = store.city_by_slug("denver")
        assert denver is not None
        row = due_message("reminder:x", "slack:T0001:C0999", datetime(2027, 2, 4, 16, 0, tzinfo=UTC))
        row.city_id, row.status, row.attempts, row.last_error = denver.id, "failed", 6, error
        store.enqueue(row)
    code, out, _ = run(seeded, "reminders", "list", "--city", "denver")
    assert code == 0
    assert out.splitlines() == [
        f"1\tdenver\tThu 4 Feb 2027, 09:00 MST\ttest\tslack:T0001:C0999\tfailed\t6\t\t{error}"
    ]
    (listed,) = json.loads(run(seeded, "reminders", "list", "--json")[1])
    assert (listed["due"], listed["error"]) == ("2027-02-04T16:00:00+00:00", error)


def test_program_show_piped_and_as_json(db_url: str) -> None:
    code, out, _ = run(db_url, "program", "show")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "cohort\t2026-27"
    # No momentum nudges or weekly digests before the program launch, nor after its last day.
    assert lines[1:3] == ["begins\tWed 27 May 2026", "ends\tWed 31 Mar 2027"]
    assert (
        "phase\tll2\tLearning Loop 2: Solution Build\timplementation\tSun 1 Nov 2026\tSun 31 Jan 2027"
        in lines
    )
    assert "event\tsite-visit\tIn-city site visit (two days)\tTue 1 Sep 2026 to Fri 16 Oct 2026" in lines
    shown = json.loads(run(db_url, "program", "show", "--json")[1])
    assert shown["cohort"] == "2026-27" and len(shown["events"]) == 11


@pytest.mark.parametrize("width", [40, 200])
def test_a_terminal_table_never_cuts_a_value(width: int) -> None:
    console = Console(file=io.StringIO(), width=width)
    values = ["America/Argentina/ComodRivadavia", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR;WKST=SU", "[draft]"]
    print_rows(["zone", "rule", "title"], [values], False, terminal=True, console=console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(value in shown for value in values) and "…" not in shown


def test_db_may_come_before_the_command(seeded: str, engine: Engine, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--db", seeded, "city", "list"])
    assert result.exit_code == 0 and result.stdout.startswith("bogota\t"), result.stderr
    assert runner.invoke(app, ["--db", seeded, *LIMA]).exit_code == 0
    with open_store(engine) as store:
        assert store.city_by_slug("lima") is not None
    # A command's own --db wins over the one before it.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert runner.invoke(app, ["--db", other, "city", "list", "--db", seeded]).stdout.startswith("bogota\t")
    assert runner.invoke(app, ["--db", other, "city", "list"]).stdout == ""


def test_say_answers_and_applies_the_clock(seeded: str) -> None:
    code, out, _ = run(
        seeded,
        "say",
        "--as",
        "whatsapp:+573001112233",
        "--now",
        "2026-11-28T12:00:00Z",
        "update: probamos el formulario",
    )
    assert (code, out) == (0, "Avance #1 registrado para Bogotá. ¡Gracias por mantener el ritmo!\n")
    code, out, _ = run(
        seeded, "say", "--as", "whatsapp:+573001112233", "--now", "2026-11-28T12:00:00Z", "/cda next"
    )
    assert "Próxima sesión: Coaching: mar 1 dic 2026, 10:00–11:00 UTC-05 (en 3 días)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as", "console:x", "--now", "yesterday", "hi"], "bad --now"),
        (["--as", "console:x", "--now", "9999-12-31T16:00Z", "hi"], "give an instant from 1900 to 2999"),
        (["--as", "console:x", "--now", "0001-01-01T00:00+01:00", "hi"], "give an instant from 1900 to"),
        (["--as", "nobody", "hi"], "not an identity"),
    ],
)
def test_say_with_bad_arguments_exits_non_zero(db_url: str, args: list[str], message: str) -> None:
    code, _, err = run(db_url, "say", *args)
    assert code == 1 and message in err


@pytest.mark.parametrize("now", ["9999-12-31T16:00Z", "0001-01-01T00:00+01:00", "1899-12-31T23:59Z"])
def test_tick_refuses_a_clock_outside_the_years_the_bot_works_in(seeded: str, now: str) -> None:
    # At datetime's ends the scheduler's days and weeks around `now` raised OverflowError.
    code, _out, err = run(seeded, "tick", "--now", now)
    assert (code, err) == (1, f"error: bad --now '{now}': give an instant from 1900 to 2999\n")


def test_demo_seeds_once_and_opens_the_chat(db_url: str, engine: Engine) -> None:
    code, out, _ = run(db_url, "demo", stdin="update: tried the demo\n/as console:coach\n/cda status\n")
    assert code == 0
    assert "Seeded three sample cities" in out and "You are console:ana" in out
    assert "Update #2 recorded for Riverton" in out
    assert "Riverton — Learning Loop" in out and "1 update in 7 days" in out
    with engine.connect() as connection:
        assert len(connection.execute(select(City)).all()) == 3
        assert len(connection.execute(select(Person)).all()) == 9
    code, out, _ = run(db_url, "demo", stdin="")
    assert code == 0 and "Using the demo data already in the database" in out
    with engine.connect() as connection:
        assert len(connection.execute(select(City)).all()) == 3


def test_demo_blocker_reaches_the_console_coach(db_url: str) -> None:
    code, out, _ = run(db_url, "demo", stdin="blocker: waiting on the 311 export\n")
    assert code == 0
    assert (
        "[to console:coach] New blocker #2 in Riverton from Ana Whitfield: waiting on the 311 export" in out
    )
    assert "reply `/cda resolve 2`" in out


def test_chat_switches_identity(seeded: str) -> None:
    code, out, _ = run(
        seeded,
        "chat",
        "--as",
        "whatsapp:+573001112233",
        stdin="blocker: sin datos\n/as slack:T0001:U0C0ACH\n/cda blockers\n/quit\n",
    )
    assert code == 0 and "Bloqueo #1 registrado para Bogotá" in out and "#1 open · opened" in out


def test_chat_as_without_an_identity_says_how_to_use_it(seeded: str) -> None:
    code, out, _ = run(seeded, "chat", "--as", "whatsapp:+573001112233", stdin="/as\n/as nobody\n")
    assert code == 0 and "No te entendí" not in out
    assert "/as needs an identity: /as <platform>:<id>, e.g. /as console:coach" in out
    assert "'nobody' is not an identity" in out


def test_db_upgrade(db_url: str) -> None:
    assert run(db_url, "db", "upgrade")[:2] == (0, "database is up to date\n")


def test_commands_skip_alembic_only_at_its_own_head(engine: Engine, tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from bot.cli.common import at_head, migration_head
    from store.db import alembic_config, make_engine, upgrade

    assert migration_head() == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert at_head(engine)
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert not at_head(empty)
    upgrade(empty, "0003")
    assert not at_head(empty)
    upgrade(empty)
    assert at_head(empty)
    empty.dispose()


def test_removing_people_bindings_and_sessions(seeded: str, engine: Engine) -> None:
    from store.repo import open_store

    run(seeded, "say", "--as", "whatsapp:+573001112233", "update: antes de salir")
    assert run(seeded, "member", "remove", "whatsapp:+573001112233")[0] == 0
    assert run(seeded, "coach", "remove", "slack:T0001:U0C0ACH", "--city", "bogota")[1].strip() == (
        "slack:T0001:U0C0ACH no longer coaches bogota"
    )
    assert run(seeded, "unbind", "slack:T0001:C0001")[1].strip() == "unbound slack:T0001:C0001 from bogota"
    assert (
        run(seeded, "session", "remove", "1", "--city", "bogota")[1].strip() == "removed session #1 of bogota"
    )
    with open_store(engine) as store:
        city = store.city_by_slug("bogota")
        assert city is not None and city.id is not None
        assert store.person("whatsapp:+573001112233") is None
        coach = store.person("slack:T0001:U0C0ACH")
        assert coach is not None and store.coached_city_ids(coach) == []
        assert store.bound_city("slack:T0001:C0001") is None and store.sessions_of(city.id) == []
        assert [u.text for u in store.updates([city.id], datetime.min.replace(tzinfo=UTC))] == [
            "antes de salir"
        ]
    assert run(seeded, "coach", "remove", "slack:T0001:U0C0ACH")[0] == 0


def test_an_admin_leaving_is_taken_off_the_roster(seeded: str, engine: Engine) -> None:
    """Staff change: an admin added once could never be removed, and kept seeing every city in chat."""
    assert run(seeded, "admin", "add", "slack:T0001:U0ADMIN", "--name", "Ops")[0] == 0
    assert run(seeded, "say", "--as", "slack:T0001:U0ADMIN", "/cda status bogota")[1].startswith("Status")
    code, out, _ = run(seeded, "admin", "remove", "slack:T0001:U0ADMIN")
    assert (code, out) == (0, "removed admin slack:T0001:U0ADMIN (what they posted stays)\n")
    listed = json.loads(run(seeded, "coach", "list", "--json")[1])
    assert "slack:T0001:U0ADMIN" not in [person["identity"] for person in listed]
    assert not run(seeded, "say", "--as", "slack:T0001:U0ADMIN", "/cda status bogota")[1].startswith("Status")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["member", "remove", "whatsapp:+573009999999"], "is not on the roster"),
        (["coach", "remove", "whatsapp:+573001112233"], "is a member, not a coach"),
        (["member", "remove", "slack:T0001:U0C0ACH"], "is a coach, not a member"),
        (["coach", "remove", "slack:T0001:U0C0ACH", "--city", "atlantis"], "unknown city 'atlantis'"),
        (["admin", "remove", "slack:T0001:U0C0ACH"], "is a coach, not an admin"),
        (["unbind", "slack:T0001:C0999"], "is not bound to any city"),
        (["session", "remove", "99", "--city", "bogota"], "bogota has no session #99"),
    ],
)
def test_removing_what_is_not_there_is_refused_and_changes_nothing(
    seeded: str, engine: Engine, args: list[str], message: str
) -> None:
    before = snapshot(engine)
    code, _, err = run(seeded, *args)
    assert code == 1 and message in err, err
    assert snapshot(engine) == before


def test_database_comes_from_database_url_else_a_file_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    add = ["city", "add", "lima", "--name", "Lima", "--tz", "America/Lima"]
    assert runner.invoke(app, add).exit_code == 0
    assert (tmp_path / "cda-bot.db").exists()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert runner.invoke(app, add).exit_code == 0  # a new database, so the slug is free there
    assert (tmp_path / "elsewhere.db").exists()
    assert runner.invoke(app, add).exit_code == 1  # and now taken


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://cda:s3cret-pw@127.0.0.1:1/cda", "cannot be reached: connection failed"),
        ("sqlite:////no/such/folder/cda.db", "cannot be reached: unable to open database file"),
        ("postgersql://cda:s3cret-pw@db/cda", "not a database URL cda-bot can use"),
        ("cda:s3cret-pw at db", "not a database URL cda-bot can use: (unreadable)"),
    ],
)
def test_a_database_that_does_not_answer_or_a_url_naming_none_is_one_clear_line(url: str, said: str) -> None:
    """As any bad argument is: no traceback, exit 1, and never the password in the URL."""
    code, stdout, stderr = run(url, "city", "list")
    assert code == 1 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and said in stderr
    assert "s3cret-pw" not in stderr and "Traceback" not in stderr


def test_nudges_turned_on_with_a_nudge_hour_in_quiet_hours_are_refused(seeded: str) -> None:
    # Off, the setting harms nothing; turned on, it would never nudge.
    assert run(seeded, "city", "set", "bogota", "--nudge-after", "0", "--nudge-hour", "21")[0] == 0
    code, _out, err = run(seeded, "city", "set", "bogota", "--nudge-after", "7")
    assert code == 1 and "no nudge would ever go out" in err, err
    assert run(seeded, "city", "set", "bogota", "--nudge-after", "7", "--quiet", "22-7")[0] == 0


def test_a_nudge_hour_in_quiet_hours_is_taken_with_a_warning_of_when_nudges_go(seeded: str) -> None:
    code, out, err = run(seeded, "city", "set", "bogota", "--nudge-hour", "6")
    assert code == 0 and "nudge after 7 days at 6:00" in out
    assert err == "warning: nudge hour 6:00 is in quiet hours 20:00–8:00: nudges go out from 8:00\n"
    assert run(seeded, "city", "set", "bogota", "--nudge-hour", "19")[::2] == (0, "")


@pytest.mark.parametrize("quiet", ["8-8", "none"])
def test_no_quiet_hours_are_said_and_stored_as_none(seeded: str, engine: Engine, quiet: str) -> None:
    # Equal hours are no quiet hours to the scheduler; `quiet 8:00–8:00` read as a whole day of them.
    code, out, err = run(seeded, "city", "set", "bogota", "--quiet", quiet)
    assert code == 0 and ", quiet none, " in out, err
    with open_store(engine) as store:
        city = store.city_by_slug("bogota")
        assert city is not None and (city.quiet_start, city.quiet_end) == (0, 0)


@pytest.mark.parametrize("zone", ["America/Bogota", "UTC", "Etc/GMT+5"])
def test_a_zone_that_is_a_place_or_a_fixed_offset_is_taken(db_url: str, zone: str) -> None:
    assert run(db_url, "city", "add", "lima", "--name", "Lima", "--tz", zone)[:2] == (
        0,
        f"added city lima (Lima, {zone})\n",
    )


def test_a_persons_name_is_stored_trimmed(seeded: str, engine: Engine) -> None:
    assert run(seeded, "member", "add", "console:new", "--city", "bogota", "--name", " Ana Ruiz ")[0] == 0
    with open_store(engine) as store:
        person = store.person("console:new")
        assert person is not None and person.name == "Ana Ruiz"
