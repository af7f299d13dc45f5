"""How list commands print: a table on a terminal, plain tab-separated lines when piped, JSON with
`--json`. Nothing is ever cut: a value too wide for the terminal folds onto more lines."""

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bot.cli.common import out

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (a list of objects) instead of a table")]

# Tab-separated output keeps one row a line and one value a field: these would break either.
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True)
class Shown:
    """A value as people read it (`Tue 1 Dec 2026, 10:00 CST`) and as `--json` gives it (ISO-8601)."""

    text: str
    data: Any


Value = Shown | str | int | list[str] | None


def text_of(value: Value, blank: str) -> str:
    if isinstance(value, Shown):
        return value.text or blank
    if value is None or value == []:
        return blank
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def data_of(value: Value) -> Any:
    return value.data if isinstance(value, Shown) else value


def tsv_line(values: Sequence[str]) -> str:
    return "\t".join(value.translate(_TSV_ESCAPES) for value in values)


def print_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Value]],
    as_json: bool,
    *,
    title: str | None = None,
    terminal: bool | None = None,
    console: Console = out,
) -> None:
    """`columns` name the values of each row: the table's headers and the JSON keys. Piped, the rows
    come without headers or title, so that `cut`, `sort` and `grep` see data only."""
    if as_json:
        records = [dict(zip(columns, map(data_of, row), strict=True)) for row in rows]
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return
    if not (sys.stdout.isatty() if terminal is None else terminal):
        for row in rows:
            print(tsv_line([text_of(value, "") for value in row]))
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not markup: a title like "[draft]" is data, not a style.
        table.add_row(*(Text(text_of(value, "—")) for value in row))
    # Measured without the terminal's limit: the width the table needs with no word broken.
    unbroken = Measurement.get(console, console.options.update(max_width=10**6), table).minimum
    if unbroken <= console.width:
        console.print(table)
        return
    # Too narrow for the longest words side by side: a block of `column  value` lines per row, which
    # the terminal wraps (soft_wrap: Rich neither breaks nor crops them).
    if title:
        console.print(Text(title, style="italic"), soft_wrap=True)
    width = max(map(len, columns))
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            line = Text.assemble((f"{column:<{width}}  ", "bold"), text_of(value, "—"))
            console.print(line, soft_wrap=True)
        console.print()
