"""The program calendar as data: the bundled 2026–27 cohort, phases by pathway, bad files refused."""

from datetime import date

import pytest
from pydantic import ValidationError

from bot.calendar.program import default_document, parse_program, program_from


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
