"""Who may see a message: the one rule every platform's replies and unprompted messages go through.

A reply is posted in a conversation only if everyone there may see all of it: a channel bound to a city
sees that city's data only, any other shared conversation sees no city's data. Anything else goes
privately to the person who asked, with a short line in the conversation saying so. A personal reply
(a sign-in link) always goes privately, whoever else may see the conversation.

An unprompted message (a reminder, a nudge, a digest, a coach's notice) is addressed when it is planned
and may wait in the outbox (a platform down, a retry): `may_be_told` asks the rule again when it is
sent, since a channel may have been bound to another city meanwhile, a member moved or a coach taken
off a city. So does a reply held back by retries (`may_still_answer`; `REPLY_FRESH` in
bot/runtime/delivery.py)."""

from collections.abc import Callable, Iterable

from bot.core.i18n import N_, Translator
from bot.core.messages import InboundMessage, Outgoing, Reply
from bot.core.request import Speaker
from store.models import City, Role
from store.views import Whereabouts

SENT_PRIVATELY = N_("I've sent you the answer in a direct message: it shows data this channel doesn't see.")
SENT_PERSONALLY = N_("I've sent you the answer in a direct message: it is for you alone.")
NOT_SENT_PRIVATELY = N_(
    "I can't send you the answer in a direct message: the app was removed from your chat with me. "
    "Add it back there, then ask again."
)


def visible_cities(channel_city: City | None) -> set[int]:
    """The cities whose data everyone in a shared conversation may see."""
    return {channel_city.id} if channel_city is not None and channel_city.id is not None else set()


def may_be_told(recipient: Whereabouts, cities: Iterable[int]) -> bool:
    """Whether a message about `cities` may go to a recipient now (`recipient`: their whereabouts as a
    person and as a conversation): a bound conversation sees its own city only, a person what their
    role lets them, any other conversation no city's data."""
    return set(cities) <= _sight(recipient)


def may_still_answer(seen: Whereabouts, cities: Iterable[int], asker: Speaker | None = None) -> bool:
    """Whether a reply about `cities`, held back since it was addressed, may still go: `asker`
    (`Reply.asker` as they are now where they asked, `speaker_of`), for an answer only they see, must
    still see all of them; otherwise `seen`, the whereabouts of the conversation others see it in,
    must, so a channel since bound to another city or unbound is not told."""
    if asker is not None:
        return set(cities) <= set(asker.accessible_ids)
    return may_be_told(seen, cities)


def _for_asker(reply: Reply, message: InboundMessage) -> Reply:
    return reply.model_copy(update={"asker": message.asked}) if reply.about else reply


def _sight(recipient: Whereabouts) -> set[int]:
    if recipient.channel_city is not None:
        return visible_cities(recipient.channel_city)
    person = recipient.person
    if person is None:
        return set()
    if person.role == Role.member:
        return {person.city_id} if person.city_id is not None else set()
    return set(recipient.accessible or ())


def address(
    message: InboundMessage,
    channel_city: City | None,
    replies: list[Reply],
    t: Translator,
    reaches_privately: Callable[[], bool] = lambda: True,
) -> list[Outgoing]:
    """`reaches_privately`: whether the sender can still be written to directly, asked only when an
    answer would go there (a removed app cannot be: the answer is not sent, and the conversation is
    told why rather than that it was)."""
    if not message.seen_by_others:
        # Only the sender saw the message (a DM, a slash command): the answer is theirs alone, given
        # where they asked (a DM's own conversation; for a slash command, privately in its channel).
        to = message.conversation if message.direct else message.sender
        return [
            Outgoing(recipient=to, reply=_for_asker(reply, message), context=message.reply_context)
            for reply in replies
        ]
    visible = visible_cities(channel_city)
    outgoing: list[Outgoing] = []
    for reply in replies:
        if not reply.personal and set(reply.about) <= visible:
            outgoing.append(
                Outgoing(recipient=message.conversation, reply=reply, context=message.reply_context)
            )
        else:
            outgoing.append(Outgoing(recipient=message.sender, reply=_for_asker(reply, message)))
    diverted = [o.reply for o in outgoing if o.recipient == message.sender]
    if diverted and not reaches_privately():
        outgoing = [o for o in outgoing if o.recipient != message.sender]
        note = Reply(text=t.gettext(NOT_SENT_PRIVATELY))
        outgoing.append(Outgoing(recipient=message.conversation, reply=note, context=message.reply_context))
    elif diverted:
        why = SENT_PERSONALLY if all(r.personal for r in diverted) else SENT_PRIVATELY
        note = Reply(text=t.gettext(why))
        outgoing.append(Outgoing(recipient=message.conversation, reply=note, context=message.reply_context))
    return outgoing
