"""Replies as plain text, for platforms without rich layout (the terminal, WhatsApp)."""

from bot.core.messages import Reply


def render_text(reply: Reply) -> str:
    parts = [reply.text]
    parts += [f"→ {button.label}: reply `{button.command}`" for button in reply.buttons]
    if reply.attachment is not None:
        parts.append(f"--- {reply.attachment.filename} ---\n{reply.attachment.content.rstrip()}")
    return "\n".join(parts)
