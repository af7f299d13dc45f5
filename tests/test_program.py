"""The program calendar as data: the bundled 2026–27 cohort, phases by pathway, bad files refused."""

from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.calendar.program import (
    ProgramFileError,
    default_document,
    load_program_file,
    parse_program,
    program_from,
)


@pytest.mark.parametrize(
    ("day", "pathway", "phase"),
    [
        (date(2026, 5, 28), None, "Before the program starts"),
        (date(2026, 6, 1), None, "Scoping phase"),
        (date(2026, 8, 31), "capacity", "Scoping phase"),
        (date(2026, 9, 1), "implementation", "Learning Loop 1: Prototype"),
        (date(2026, 9, 1), "capacity", "Capacity-building pathway"),
        (date(2026, 11, 28), "implementation", "Learning Loop 2: Solution Build"),
        (date(2027, 1, 31), None, "Learning Loop 2: Solution Build"),
        (date(2027, 2, 1), "implementation", "Learning Loop 3: Scale and Launch"),
        (date(2027, 4, 1), "implementation", "Program complete"),
    ],
)
def test_phase_on_a_day(day: date, pathway: str | None, phase: str) -> None:
    assert program_from(None).phase_label(day, pathway) == phase


def test_convening_has_a_month_but_no_day() -> None:
    convening = next(e for e in program_from(None).events if e.key == "convening")
    assert convening.month == "2027-01" and not convening.fixed


def test_the_program_ends_on_the_last_day_any_phase_or_event_covers() -> None:
    assert program_from(None).last_day == date(2027, 3, 31)  # Learning Loop 3, the capacity pathway
    phase = {"key": "s", "name": "S", "start": "2027-06-01", "end": "2027-08-31"}
    later = {"key": "demo", "name": "Demo day", "month": "2027-09"}
    assert program_from({"cohort": "x", "phases": [phase], "events": [later]}).last_day == date(2027, 9, 30)
    # No item with a known end: the program has none, and nudges and digests go on.
    per_city = {"key": "mayor", "name": "Mayor check-ins", "per_city": True}
    assert program_from({"cohort": "x", "phases": [], "events": [per_city]}).last_day is None


def test_event_with_two_dates_is_refused() -> None:
    document = default_document() | {
        "events": [{"key": "x", "name": "X", "date": "2027-01-01", "month": "2027-01"}]
    }
    with pytest.raises(ValidationError, match="exactly one of"):
        parse_program(document)


def test_phase_ending_before_it_starts_is_refused() -> None:
    bad = {"key": "p", "name": "P", "start": "2027-01-02", "end": "2027-01-01"}
    with pytest.raises(ValidationError, match="ends before it starts"):
        parse_program({"cohort": "x", "phases": [bad]})


def test_loaded_calendar_replaces_the_bundled_one() -> None:
    document = {
        "cohort": "2027-28",
        "phases": [{"key": "s", "name": "Scoping 2027", "start": "2027-06-01", "end": "2027-08-31"}],
    }
    assert program_from(document).phase_label(date(2027, 7, 1), None) == "Scoping 2027"


def write_program(tmp_path: Path, events: str) -> Path:
    path = tmp_path / "next.yaml"
    path.write_text(
        "cohort: 2027-28\n"
        "phases:\n"
        "  - key: scoping\n"
        "    name: Scoping\n"
        "    start: 2027-06-01\n"
        "    end: 2027-08-31\n"
        "events:\n"
        "  - key: launch\n"
        "    name: Launch\n"
        "    date: 2027-05-26\n" + events
    )
    return path


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (  # an event naming a phase the file does not have: its `phase:` line (13)
            "  - key: workshop\n    name: Workshop\n    phase: scoping-2\n",
            ":13: events.1.phase: event 'workshop' names unknown phase 'scoping-2'",
        ),
        (  # a key used twice: the second one's line (11)
            "  - key: launch\n    name: Launch again\n    date: 2027-06-02\n",
            ":11: events.1.key: key 'launch' is used twice",
        ),
    ],
)
def test_a_reference_error_names_the_events_line(tmp_path: Path, events: str, message: str) -> None:
    path = write_program(tmp_path, events)
    with pytest.raises(ProgramFileError) as refused:
        load_program_file(path)
    assert str(refused.value) == f"{path}{message}"


def test_a_phase_key_used_twice_names_the_second_phase(tmp_path: Path) -> None:
    path = tmp_path / "next.yaml"
    phase = "  - key: scoping\n    name: Scoping\n    start: 2027-06-01\n    end: 2027-08-31\n"
    path.write_text("cohort: 2027-28\nphases:\n" + phase + phase)
    with pytest.raises(ProgramFileError, match=r":7: phases\.1\.key: key 'scoping' is used twice"):
        load_program_file(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cohort: 2027-28\ncohort: 2028-29\nphases: []\n", ":2: not valid YAML (key 'cohort' is given twice"),
        (
            "cohort: 2027-28\nphases:\n  - key: s\n    name: Scoping\n    start: 2027-06-01\n"
            "    end: 2027-08-31\n    start: 2027-07-01\n",
            ":7: not valid YAML (key 'start' is given twice, first on line 5)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_with_its_name_and_line(tmp_path: Path, text: str, message: str) -> None:
    # PyYAML kept the last one given: the first date was lost without a word.
    path = tmp_path / "next.yaml"
    path.write_text(text)
    with pytest.raises(ProgramFileError) as refused:
        load_program_file(path)
    assert str(refused.value).startswith(f"{path}{message}")


def test_a_key_a_merge_brings_in_may_be_given_again(tmp_path: Path) -> None:
    path = tmp_path / "next.yaml"
    path.write_text(
        "cohort: 2027-28\nphases:\n  - &scoping {key: s, name: Scoping, start: 2027-06-01, end: 2027-08-31}\n"
        "  - {<<: *scoping, key: b, name: Build}\n"
    )
    assert [phase["key"] for phase in load_program_file(path)["phases"]] == ["s", "b"]


@pytest.mark.parametrize("cohort", ['""', "'  '"])
def test_an_empty_cohort_is_refused(tmp_path: Path, cohort: str) -> None:
    path = tmp_path / "next.yaml"
    phase = "{key: s, name: S, start: 2027-06-01, end: 2027-08-31}"
    path.write_text(f"cohort: {cohort}\nphases:\n  - {phase}\n")
    with pytest.raises(ProgramFileError) as refused:
        load_program_file(path)
    assert str(refused.value) == f"{path}:1: cohort: must not be empty: name the cohort, e.g. 2027-28"
    # One loaded before this check is still read: every question and scheduler pass parses it again.
    assert program_from({"cohort": "", "phases": []}).cohort == ""
