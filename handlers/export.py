"""CSV export of updates or blockers of the cities a coach may see."""

import csv
import io
from datetime import UTC, datetime

from bot.core.messages import Attachment, Reply
from bot.core.request import Request
from store.repo import Store

KINDS = ("updates", "blockers")


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def export(req: Request, store: Store) -> Reply:
    _ = req.t.gettext
    kind = req.args.strip().lower()
    if kind not in KINDS:
        return Reply(text=_("Export what? Say `/cda export updates` or `/cda export blockers`."))
    ids = [c.id for c in req.cities if c.id is not None]
    slugs = {c.id: c.slug for c in req.cities}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if kind == "updates":
        rows = store.updates(ids, datetime.min.replace(tzinfo=UTC), limit=100_000)
        writer.writerow(["id", "city", "created_at", "author", "platform", "text"])
        for u in rows:
            writer.writerow([u.id, slugs[u.city_id], _iso(u.created_at), u.author, u.platform, u.text])
    else:
        rows = store.blockers(ids, include_resolved=True)
        writer.writerow(
            ["id", "city", "status", "opened_at", "author", "text", "resolved_at", "resolved_by", "note"]
        )
        for b in rows:
            writer.writerow(
                [
                    b.id,
                    slugs[b.city_id],
                    b.status,
                    _iso(b.opened_at),
                    b.author,
                    b.text,
                    _iso(b.resolved_at),
                    b.resolved_by or "",
                    b.resolution_note or "",
                ]
            )
    filename = f"cda-{kind}-{req.now:%Y%m%d}.csv"
    return Reply(
        text=_("{rows} rows of {kind} from {cities} cities, as CSV ({filename}).").format(
            rows=len(rows), kind=kind, cities=len(ids), filename=filename
        ),
        attachment=Attachment(filename=filename, media_type="text/csv", content=buffer.getvalue()),
    )
