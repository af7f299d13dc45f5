"""CSV export of updates or blockers of the cities a coach may see."""

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.core.messages import Attachment, Reply
from bot.core.request import Request
from store.repo import Store

KINDS = ("updates", "blockers")
UPDATE_COLUMNS = "id city created_at author platform text".split()
BLOCKER_COLUMNS = "id city status opened_at author text resolved_at resolved_by note".split()
# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection"); the
# full-width forms count too, since some spreadsheets fold them to their ASCII twins.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def inert(value: object) -> str:
    """A cell a spreadsheet shows as text and never runs: one that could start a formula, even after
    leading blanks, gets a leading `'` (which the spreadsheet shows; the rest is kept as written)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) or text.lstrip().startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    """The one way the project writes CSV: every cell made inert first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([inert(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def export(req: Request, store: Store) -> Reply:
    _, t = req.t.gettext, req.t
    kind = req.args.strip().lower()
    if kind not in KINDS:
        return Reply(text=_("Export what? Say `/cda export updates` or `/cda export blockers`."))
    ids = [c.id for c in req.cities if c.id is not None]
    slugs = {c.id: c.slug for c in req.cities}
    table: list[list[object]]
    if kind == "updates":
        updates = store.updates(ids, datetime.min.replace(tzinfo=UTC), limit=100_000)
        table = [[*UPDATE_COLUMNS]]
        table += [[u.id, slugs[u.city_id], _iso(u.created_at), u.author, u.platform, u.text] for u in updates]
        rows = t.ngettext("{count} update", "{count} updates", len(updates))
    else:
        blockers = store.blockers(ids, include_resolved=True)
        table = [[*BLOCKER_COLUMNS]]
        table += [
            [
                b.id,
                slugs[b.city_id],
                b.status,
                _iso(b.opened_at),
                b.author,
                b.text,
                _iso(b.resolved_at),
                b.resolved_by,
                b.resolution_note,
            ]
            for b in blockers
        ]
        rows = t.ngettext("{count} blocker", "{count} blockers", len(blockers))
    count = len(table) - 1
    cities = t.ngettext("{count} city", "{count} cities", len(ids)).format(count=t.number(len(ids)))
    filename = f"cda-{kind}-{req.now:%Y%m%d}.csv"
    return Reply(
        text=_("{rows} from {cities}, as CSV ({filename}).").format(
            rows=rows.format(count=t.number(count)), cities=cities, filename=filename
        ),
        attachment=Attachment(filename=filename, media_type="text/csv", content=csv_text(table)),
    )
