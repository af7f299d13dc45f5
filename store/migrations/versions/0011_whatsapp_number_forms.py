"""One WhatsApp number, one identity: Mexican, Argentine and Brazilian mobiles stored in the one form
bot/core/identity.py gives them (`+52` without the legacy `1`, `+54 9`, `+55` with the ninth digit),
in every table that names a person or conversation.

Before, a number rostered in one form and written from the other (Twilio gives the form WhatsApp knows
the phone by) was two identities, so the same person may be here twice. Where two rows become one:
- people: the older row (the lower id, rostered first, usually by an admin) stays, with its role and
  city; the newer one's coach cities move to it when both are coaches, a `stop` said under either form
  is kept, and the newer row goes. Each merge is logged, so an admin can check the role that stayed.
- channel bindings: the older binding stays.
- conversation references: the one written last stays (it has when the number last wrote, which
  decides free text or template), and keeps the form its key had as the address to send to: the
  number wrote from it, so WhatsApp delivers to it.
- outbox: a row's key names its recipient, so it is rewritten too; where the rewritten key is already
  taken (the same reminder planned for both forms), the key stays, and whichever of the two is still
  pending is dropped, so the message goes once.
Authors, dashboard links and sessions, and the messages still in the inbox are simply rewritten.
`opt_outs` (0010) came in the same release as this migration: it is empty here, and written in the
stored form from then on.

The downgrade changes nothing: the stored forms are valid identities for the previous release too, and
merged rows cannot be told apart again.

Revision ID: 0011
Revises: 0010
"""

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

PREFIX = "whatsapp:"
ADDRESS = "address"  # adapters/whatsapp/parse.py: the form a number wrote from
# As in bot/core/identity.py at this revision: a migration keeps its own copy, so that a later change
# there does not change what this one did.
FORMS = (
    (re.compile(r"^\+521([2-9][0-9]{9})$"), r"+52\1"),
    (re.compile(r"^\+54([1-3][0-9]{9})$"), r"+549\1"),
    (re.compile(r"^\+55([1-9][1-9])([6-9][0-9]{7})$"), r"+55\g<1>9\2"),
)

people = sa.table(
    "people",
    sa.column("id", sa.Integer),
    sa.column("identity", sa.String),
    sa.column("name", sa.String),
    sa.column("role", sa.String),
    sa.column("all_cities", sa.Boolean),
    sa.column("stopped_at", sa.DateTime),
)
coach_cities = sa.table("coach_cities", sa.column("person_id", sa.Integer), sa.column("city_id", sa.Integer))
bindings = sa.table("channel_bindings", sa.column("id", sa.Integer), sa.column("conversation", sa.String))
references = sa.table(
    "conversation_references",
    sa.column("id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("reference", sa.JSON),
    sa.column("updated_at", sa.DateTime),
)
outbox = sa.table(
    "outbox",
    sa.column("id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("recipient", sa.String),
    sa.column("status", sa.String),
    sa.column("last_error", sa.String),
)
inbox = sa.table(
    "inbox",
    sa.column("id", sa.Integer),
    sa.column("platform", sa.String),
    sa.column("status", sa.String),
    sa.column("message", sa.JSON),
)
RENAMED = (  # columns naming a person, no row of which can collide with another
    ("updates", "author"),
    ("blockers", "author"),
    ("blockers", "resolved_by"),
    ("dashboard_links", "identity"),
    ("dashboard_sessions", "identity"),
)


def canonical(identity: str) -> str:
    number = identity.removeprefix(PREFIX)
    for form, stored in FORMS:
        if identity.startswith(PREFIX) and form.match(number):
            return PREFIX + form.sub(stored, number)
    return identity


def upgrade() -> None:
    bind = op.get_bind()
    _people(bind)
    _bindings(bind)
    _references(bind)
    for table, column in RENAMED:
        _rename(bind, table, column)
    _outbox(bind)
    _inbox(bind)


def downgrade() -> None:
    pass


def _groups(rows: Sequence[Any], name: str) -> dict[str, list[Any]]:
    """The rows by the identity their `name` column becomes, where any of them changes."""
    found: defaultdict[str, list[Any]] = defaultdict(list)
    for row in rows:
        found[canonical(getattr(row, name))].append(row)
    return {new: group for new, group in found.items() if any(getattr(r, name) != new for r in group)}


def _people(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.select(people).where(people.c.identity.like(f"{PREFIX}%")).order_by(people.c.id)
    ).all()
    for new, (keeper, *others) in _groups(rows, "identity").items():
        stopped = [r.stopped_at for r in (keeper, *others) if r.stopped_at is not None]
        changes: dict[str, Any] = {"identity": new, "stopped_at": min(stopped) if stopped else None}
        for other in others:
            log.warning(
                "one WhatsApp number on the roster twice: %s (%s) merged into %s (%s), as %s",
                other.identity,
                other.role,
                keeper.identity,
                keeper.role,
                new,
            )
            if keeper.role == other.role == "coach":
                _move_coach_cities(bind, other.id, keeper.id)
                changes["all_cities"] = bool(keeper.all_cities or other.all_cities)
            changes["name"] = changes.get("name") or keeper.name or other.name
            bind.execute(coach_cities.delete().where(coach_cities.c.person_id == other.id))
            bind.execute(people.delete().where(people.c.id == other.id))
        bind.execute(people.update().where(people.c.id == keeper.id).values(**changes))


def _move_coach_cities(bind: sa.Connection, source: int, target: int) -> None:
    def cities(person: int) -> set[int]:
        query = sa.select(coach_cities.c.city_id).where(coach_cities.c.person_id == person)
        return set(bind.execute(query).scalars())

    for city in cities(source) - cities(target):
        bind.execute(coach_cities.insert().values(person_id=target, city_id=city))


def _bindings(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.select(bindings).where(bindings.c.conversation.like(f"{PREFIX}%")).order_by(bindings.c.id)
    ).all()
    for new, (keeper, *others) in _groups(rows, "conversation").items():
        for other in others:
            log.warning("%s bound twice: %s stays, %s goes", new, keeper.conversation, other.conversation)
            bind.execute(bindings.delete().where(bindings.c.id == other.id))
        bind.execute(bindings.update().where(bindings.c.id == keeper.id).values(conversation=new))


def _references(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.select(references)
        .where(references.c.key.like(f"{PREFIX}%"))
        .order_by(references.c.updated_at.desc(), references.c.id.desc())
    ).all()
    for new, (keeper, *others) in _groups(rows, "key").items():
        for other in others:
            bind.execute(references.delete().where(references.c.id == other.id))
        reference = dict(keeper.reference or {})
        if keeper.key != new:
            reference.setdefault(ADDRESS, keeper.key)
        bind.execute(
            references.update().where(references.c.id == keeper.id).values(key=new, reference=reference)
        )


def _changed(bind: sa.Connection, table: sa.TableClause, column: str) -> dict[str, str]:
    query = sa.select(table.c[column]).where(table.c[column].like(f"{PREFIX}%")).distinct()
    return {old: canonical(old) for old in bind.execute(query).scalars() if canonical(old) != old}


def _rename(bind: sa.Connection, name: str, column: str) -> None:
    table = sa.table(name, sa.column(column, sa.String))
    for old, new in _changed(bind, table, column).items():
        bind.execute(table.update().where(table.c[column] == old).values({column: new}))


def _outbox(bind: sa.Connection) -> None:
    changed = _changed(bind, outbox, "recipient")
    if not changed:
        return
    rows = bind.execute(
        sa.select(outbox).where(outbox.c.recipient.in_(list(changed))).order_by(outbox.c.id)
    ).all()
    for row in rows:
        new = changed[row.recipient]
        # Keys name the recipient among other parts (`whatsapp:+52…|reminder-60|…`,
        # `blocker_opened:7:whatsapp:+52…`): the number alone is replaced, not a longer one it begins.
        key = re.sub(re.escape(row.recipient) + r"(?![0-9])", new, row.key)
        values: dict[str, Any] = {"recipient": new}
        twin = bind.execute(sa.select(outbox.c.id, outbox.c.status).where(outbox.c.key == key)).first()
        if twin is None:
            values["key"] = key
        elif row.status == "pending":
            values.update(status="dropped", last_error=f"the same message as outbox row {twin.id}")
        elif twin.status == "pending":
            bind.execute(
                outbox.update()
                .where(outbox.c.id == twin.id)
                .values(status="dropped", last_error=f"the same message as outbox row {row.id}")
            )
        bind.execute(outbox.update().where(outbox.c.id == row.id).values(**values))


def _inbox(bind: sa.Connection) -> None:
    """Messages not yet handled (or kept after failing) name their sender inside the stored message."""
    query = sa.select(inbox.c.id, inbox.c.message).where(
        inbox.c.platform == "whatsapp", inbox.c.status != "done"
    )
    for row in bind.execute(query).all():
        message = row.message
        if not isinstance(message, dict) or not isinstance(message.get("sender"), str):
            continue
        old = message["sender"]
        new = canonical(old)
        if new == old:
            continue
        message = {**message, "sender": new}
        if message.get("conversation") == old:
            message["conversation"] = new
        for part in ("reference", "reply_context"):
            if isinstance(message.get(part), dict):
                message[part] = {**message[part], ADDRESS: old}
        bind.execute(inbox.update().where(inbox.c.id == row.id).values(message=message))
