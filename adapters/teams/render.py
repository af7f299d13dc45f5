"""`Reply` as a Teams message: an Adaptive Card (schema 1.5) when the reply has structure (a title,
fields, a list, buttons, a CSV), with its text as the card's fallback; plain text otherwise. Every
message fits Teams' size limit: a list too long loses its last lines (and says how many), a text too
long is cut — a reply is never refused for its size."""

import html
import json
import re
from collections.abc import Callable
from typing import Any

from adapters.teams.parse import ACTION_KEY, VALUE_KEY
from bot.core.messages import Reply

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"  # what Teams renders everywhere, desktop and mobile
# Teams takes about 100 KB (counted in UTF-16) and asks bots to stay within 80 KB.
MAX_ACTIVITY_BYTES = 80_000
MAX_SUMMARY = 200  # the notification's preview line
MAX_BUTTONS = 6
_CODE = re.compile(r"`([^`\n]+)`")


def size(activity: dict[str, Any]) -> int:
    """The activity's size as Teams counts it: its JSON in UTF-16."""
    return len(json.dumps(activity, ensure_ascii=False).encode("utf-16-le"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


# -- text ---------------------------------------------------------------------------------------------


def as_html(text: str) -> str:
    """Text for `textFormat: xml`: what people typed shows as typed (no tags of theirs take effect),
    `code` stays code, and line breaks stay."""
    escaped = html.escape(text, quote=False)
    return _CODE.sub(r"<code>\1</code>", escaped).replace("\n", "<br>")


def _text_activity(text: str) -> dict[str, Any]:
    return {"type": "message", "textFormat": "xml", "text": as_html(text or " ")}


def _attachment_text(reply: Reply) -> str:
    if reply.attachment is None:
        return ""
    return f"\n--- {reply.attachment.filename} ---\n{reply.attachment.content.rstrip()}"


# -- cards --------------------------------------------------------------------------------------------


def wants_card(reply: Reply) -> bool:
    return bool(reply.title or reply.fields or reply.items or reply.buttons or reply.attachment)


def _lines(reply: Reply) -> list[str]:
    """The card's list: the reply's items, or its text below the title."""
    if reply.items:
        return list(reply.items)
    if reply.fields:
        return []
    text = reply.text
    if reply.title and text.startswith(reply.title):
        text = text[len(reply.title) :].strip()  # the card's title already says it
    return [line for line in text.splitlines() if line.strip()]


def _block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def card(reply: Reply, keep_lines: int | None = None, keep_csv: int | None = None) -> dict[str, Any]:
    """The Adaptive Card for `reply`, with at most `keep_lines` lines of its list and `keep_csv` lines
    of its CSV (all of them when None); what is left out is counted at the end."""
    body: list[dict[str, Any]] = []
    if reply.title:
        body.append(_block(reply.title, weight="Bolder", size="Medium"))
    if reply.fields:
        body.append(
            {"type": "FactSet", "facts": [{"title": f.label, "value": f.value} for f in reply.fields]}
        )
    lines = _lines(reply)
    shown = lines if keep_lines is None else lines[:keep_lines]
    for index, line in enumerate(shown):
        body.append(_block(line, spacing="Small", separator=bool(reply.items) and index > 0))
    if len(shown) < len(lines):
        body.append(_block(f"… (+{len(lines) - len(shown)})", isSubtle=True, spacing="Small"))
    if reply.attachment is not None:
        rows = reply.attachment.content.rstrip().splitlines()
        kept = rows if keep_csv is None else rows[:keep_csv]
        body.append(_block(reply.attachment.filename, weight="Bolder", spacing="Medium"))
        if kept:
            body.append(_block("\n\n".join(kept), fontType="Monospace", size="Small"))
        if len(kept) < len(rows):
            body.append(_block(f"… (+{len(rows) - len(kept)})", isSubtle=True, spacing="Small"))
    if not body:
        body.append(_block(reply.text or " "))
    content: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
        "fallbackText": reply.text,
    }
    if reply.buttons:
        content["actions"] = [
            {
                "type": "Action.Submit",
                "title": button.label,
                # Comes back as the activity's `value` when pressed, from whoever pressed it.
                "data": {ACTION_KEY: button.action, VALUE_KEY: button.value},
            }
            for button in reply.buttons[:MAX_BUTTONS]
        ]
    return content


def _card_activity(reply: Reply, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        # The notification's preview: a card alone would show as "sent a card".
        "summary": _clip((reply.text or reply.title or " ").splitlines()[0], MAX_SUMMARY),
        "attachments": [{"contentType": CARD_TYPE, "content": content}],
    }


# -- fitting ------------------------------------------------------------------------------------------


def _largest(count: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in 0..count with fits(n), assuming fits is monotone; None if not even 0 fits."""
    if not fits(0):
        return None
    low, high = 0, count
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _fitted_text(text: str, limit: int) -> dict[str, Any]:
    activity = _text_activity(text)
    if size(activity) <= limit:
        return activity
    keep = _largest(len(text), lambda n: size(_text_activity(text[:n] + "…")) <= limit) or 0
    return _text_activity(text[:keep] + "…")


def activity(reply: Reply, limit: int = MAX_ACTIVITY_BYTES) -> dict[str, Any]:
    """The message activity for `reply` (without addressing), within `limit` bytes."""
    if not wants_card(reply):
        return _fitted_text(reply.text, limit)
    whole = _card_activity(reply, card(reply))
    if size(whole) <= limit:
        return whole
    # Too large: keep the whole list if it fits without the CSV's rows, then as many rows as fit;
    # else as much of the list as fits, and no rows.
    lines = len(_lines(reply))
    rows = len(reply.attachment.content.rstrip().splitlines()) if reply.attachment else 0

    def fits(keep_lines: int, keep_csv: int) -> bool:
        content = card(reply.model_copy(update={"text": _clip(reply.text, 2000)}), keep_lines, keep_csv)
        return size(_card_activity(reply, content)) <= limit

    shortened = reply.model_copy(update={"text": _clip(reply.text, 2000)})
    if fits(lines, 0):
        keep_csv = _largest(rows, lambda n: fits(lines, n)) or 0
        return _card_activity(reply, card(shortened, lines, keep_csv))
    keep_lines = _largest(lines, lambda n: fits(n, 0))
    if keep_lines is not None:
        return _card_activity(reply, card(shortened, keep_lines, 0))
    # Not even the title and fields fit (they never should): the text alone, cut.
    return _fitted_text(reply.text + _attachment_text(reply), limit)
