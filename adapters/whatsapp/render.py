"""Replies as WhatsApp text: a *bold* title, fields as `*label*: value` lines, short bullet lists, and
buttons as the command to type; then cut into messages of at most 1,600 characters, Twilio's limit
for one WhatsApp body."""

import re

from bot.core.messages import Reply

MAX_PART = 1600
# Of a CSV (`/cda export`), the rows that fit in about four messages, then how many were left out, as
# Teams shows it: 100,000 rows inline would be a thousand messages on someone's phone.
MAX_CSV = 6000
FENCE = "```"  # opens and closes a monospace block
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_MARKDOWN_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _bold(text: str) -> str:
    text = text.strip()
    return f"*{text}*" if text and not (text.startswith("*") and text.endswith("*")) else text


def render(reply: Reply) -> str:
    """The whole reply as one WhatsApp text (split later by `parts`)."""
    lines: list[str] = []
    body = reply.text
    if reply.title:
        lines.append(_bold(reply.title))
        if body.startswith(reply.title):
            body = body[len(reply.title) :].strip()  # the title already says it
    structured = bool(reply.fields or reply.items)
    if reply.fields:
        lines += [f"*{f.label}*: {f.value}" for f in reply.fields]
    if reply.items:
        lines += [f"• {item}" for item in reply.items]
    if not structured and body:
        lines.append(body)
    lines += [f"→ {button.label}: reply `{button.command}`" for button in reply.buttons]
    if reply.attachment is not None:
        lines.append(f"*{reply.attachment.filename}*\n```\n{_rows_that_fit(reply.attachment.content)}\n```")
    text = "\n".join(lines) if lines else (reply.text or " ")
    # WhatsApp's bold is one asterisk; a Markdown `**x**` would show its stars.
    return _MARKDOWN_BOLD.sub(r"*\1*", text)


def _rows_that_fit(content: str, limit: int = MAX_CSV) -> str:
    rows = content.rstrip().splitlines()
    kept: list[str] = []
    size = 0
    for row in rows:
        size += len(row) + 1
        if size > limit:
            break
        kept.append(row)
    shown = "\n".join(kept)
    return shown if len(kept) == len(rows) else f"{shown}\n… (+{len(rows) - len(kept)})"


def _pieces(text: str, limit: int) -> list[str]:
    """`text` in pieces no longer than `limit`: whole lines, else whole sentences, else words, and
    only a word longer than `limit` is cut."""
    if len(text) <= limit:
        return [text]
    for pattern in ("\n", _SENTENCE_END, " "):
        units = text.split(pattern) if isinstance(pattern, str) else pattern.split(text)
        if len(units) > 1:
            joiner = pattern if isinstance(pattern, str) else " "
            out: list[str] = []
            current = ""
            for unit in units:
                for piece in _pieces(unit, limit) if len(unit) > limit else [unit]:
                    candidate = f"{current}{joiner}{piece}" if current else piece
                    if len(candidate) <= limit:
                        current = candidate
                    else:
                        if current:
                            out.append(current)
                        current = piece
            if current:
                out.append(current)
            return out
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def parts(text: str, limit: int = MAX_PART) -> list[str]:
    """The messages to send for `text`, in order, none empty and none over `limit` characters."""
    fenced = FENCE in text
    # Room for the fences `_fenced` may add at both ends of a part.
    room = limit - 2 * len(f"{FENCE}\n") if fenced else limit
    found = [piece.strip("\n") for piece in _pieces(text, room)]
    found = [piece for piece in found if piece.strip()]
    if not found:
        return [text[:limit] or " "]
    return _fenced(found) if fenced else found


def _fenced(pieces: list[str]) -> list[str]:
    """WhatsApp shows a ``` left open in a message as it is, and what follows in the usual font: a
    monospace block (a CSV) cut between parts is closed at the end of each and opened again in the next."""
    out: list[str] = []
    inside = False
    for piece in pieces:
        opened = inside
        inside = inside != (piece.count(FENCE) % 2 == 1)
        if opened and piece == FENCE:
            continue  # only the block's end: the part before closed it already
        starts = inside and piece.endswith(FENCE)  # the block only starts here: the next part opens it
        if starts:
            piece = piece.removesuffix(FENCE).rstrip("\n")
        shown = f"{FENCE}\n" * opened + piece + f"\n{FENCE}" * (inside and not starts)
        if shown.strip():
            out.append(shown)
    return out
