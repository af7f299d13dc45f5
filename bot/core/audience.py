"""Who may see a reply: the one rule every platform's replies go through.

A reply is posted in a conversation only if everyone there may see all of it: a channel bound to a city
sees that city's data only, any other shared conversation sees no city's data. Anything else goes
privately to the person who asked, with a short line in the conversation saying so. A personal reply
(a sign-in link) always goes privately, whoever else may see the conversation."""

from bot.core.i18n import N_, Translator
from bot.core.messages import InboundMessage, Outgoing, Reply
from store.models import City

SENT_PRIVATELY = N_("I've sent you the answer in a direct message: it shows data this channel doesn't see.")
SENT_PERSONALLY = N_("I've sent you the answer in a direct message: it is for you alone.")


def visible_cities(channel_city: City | None) -> set[int]:
    """The cities whose data everyone in a shared conversation may see."""
    return {channel_city.id} if channel_city is not None and channel_city.id is not None else set()


def address(
    message: InboundMessage, channel_city: City | None, replies: list[Reply], t: Translator
) -> list[Outgoing]:
    if not message.seen_by_others:
        # Only the sender saw the message (a DM, a slash command): the answer is theirs alone, given
        # where they asked (a DM's own conversation; for a slash command, privately in its channel).
        to = message.conversation if message.direct else message.sender
        return [Outgoing(recipient=to, reply=reply, context=message.reply_context) for reply in replies]
    visible = visible_cities(channel_city)
    outgoing: list[Outgoing] = []
    for reply in replies:
        if not reply.personal and set(reply.about) <= visible:
            outgoing.append(
                Outgoing(recipient=message.conversation, reply=reply, context=message.reply_context)
            )
        else:
            outgoing.append(Outgoing(recipient=message.sender, reply=reply))
    diverted = [o.reply for o in outgoing if o.recipient == message.sender]
    if diverted:
        why = SENT_PERSONALLY if all(r.personal for r in diverted) else SENT_PRIVATELY
        note = Reply(text=t.gettext(why))
        outgoing.append(Outgoing(recipient=message.conversation, reply=note, context=message.reply_context))
    return outgoing
