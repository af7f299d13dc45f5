"""`Reply` as Block Kit, inside Block Kit's limits; `text` is always the notification fallback."""

from typing import Any

from bot.core.messages import Attachment, Reply

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_BUTTON_LABEL = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTIONS = 25
MAX_FALLBACK = 3900  # Slack truncates longer `text`; the blocks carry the whole reply
INLINE_CSV_LIMIT = 2800  # a CSV this short is shown as a code block; a longer one is uploaded as a file


def escape(text: str) -> str:
    """mrkdwn treats &, < and > as control characters; what people typed must show as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}}


def _chunks(lines: list[str], limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Lines packed into as few texts of at most `limit` characters as they fit in."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = _clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def inline_csv(attachment: Attachment) -> bool:
    return len(escape(attachment.content)) <= INLINE_CSV_LIMIT  # as it is shown, escaped


def _body_lines(reply: Reply) -> list[str]:
    if reply.items:
        return [escape(item) for item in reply.items]
    if reply.fields:
        return []
    text = reply.text
    if reply.title and text.startswith(reply.title):
        text = text[len(reply.title) :].strip()  # the header already says it
    return [escape(line) for line in text.splitlines()] if text else []


def render_blocks(reply: Reply) -> list[dict[str, Any]]:
    head: list[dict[str, Any]] = []
    if reply.title:
        title = {"type": "plain_text", "text": _clip(reply.title, MAX_HEADER)}
        head.append({"type": "header", "text": title})
    for start in range(0, len(reply.fields), MAX_FIELDS):
        fields = [
            {"type": "mrkdwn", "text": _clip(f"*{escape(f.label)}*\n{escape(f.value)}", MAX_FIELD_TEXT)}
            for f in reply.fields[start : start + MAX_FIELDS]
        ]
        head.append({"type": "section", "fields": fields})
    body = [_section(chunk) for chunk in _chunks(_body_lines(reply))]
    if not reply.title and not body and not reply.fields:
        body = [_section(escape(reply.text or " "))]
    tail: list[dict[str, Any]] = []
    if reply.attachment is not None and inline_csv(reply.attachment):
        csv = escape(reply.attachment.content.rstrip())  # people's words, read as mrkdwn in a code block too
        tail.append(_section(f"`{escape(reply.attachment.filename)}`\n```{csv}```"))
    if reply.buttons:
        tail.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        # action ids must differ within a message; the listener matches their prefix
                        "action_id": f"{button.action}:{index}",
                        "text": {"type": "plain_text", "text": _clip(button.label, MAX_BUTTON_LABEL)},
                        "value": _clip(button.value, MAX_BUTTON_VALUE),
                    }
                    for index, button in enumerate(reply.buttons[:MAX_ACTIONS])
                ],
            }
        )
    room = MAX_BLOCKS - len(head) - len(tail)
    if len(body) > room:
        # The lines left out, counted as Teams and WhatsApp count them: a note in words would be in
        # English whatever language the reply speaks.
        left_out = sum(section["text"]["text"].count("\n") + 1 for section in body[room - 1 :])
        body = [*body[: room - 1], _section(f"… (+{left_out})")]
    return [*head, *body, *tail]


def fallback_text(reply: Reply) -> str:
    """The message's `text`: mrkdwn too, read by Slack for mentions and shown in notifications, so what
    people typed is escaped here as in the blocks (`<!channel>` in an update would ping the channel)."""
    text = escape(reply.text or reply.title or " ")
    if len(text) <= MAX_FALLBACK:
        return text
    cut = text[: MAX_FALLBACK - 1]
    amp = cut.rfind("&", -4)
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # never half an `&amp;`, which would show as `&am`
    return cut + "…"
