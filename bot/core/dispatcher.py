"""The one dispatcher: dedupe, who is speaking, which city and language, may they, which handler."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.calendar.questions import cities_named
from bot.core import conversations
from bot.core.audience import address
from bot.core.commands import (
    PREFIX,
    TAKES,
    WRITES,
    ArgumentError,
    Command,
    ListingArgs,
    extra_words,
    parse,
    parse_listing,
)
from bot.core.i18n import N_, Translator, translator, unaccented
from bot.core.identity import platform_of
from bot.core.messages import MAX_TEXT, InboundMessage, Outgoing, Reply
from bot.core.request import Request, Speaker, SpeakerRole
from handlers import blockers, dashboard, export, help, join, schedule, status, stop, updates
from store import views
from store.models import City
from store.repo import Store

log = logging.getLogger("cda_bot.dispatcher")

Handler = Callable[[Request, Store], Reply]

MEMBER, COACH, ADMIN, GUEST = SpeakerRole.member, SpeakerRole.coach, SpeakerRole.admin, SpeakerRole.guest
ANYONE = frozenset({MEMBER, COACH, ADMIN, GUEST})
SEERS = frozenset({MEMBER, COACH, ADMIN})
COACHES = frozenset({COACH, ADMIN})


@dataclass(frozen=True)
class Spec:
    handler: Handler
    roles: frozenset[SpeakerRole]
    # own: the member's city · named: `[city] [all] [days]` checked against what the speaker may see ·
    # accessible: every city the speaker may see that is in the program · coached: every city the
    # speaker may see, archived ones too · context: the city of the conversation or speaker, if there
    # is one · none: the handler needs no city
    scope: str
    # Changes who someone is (a person added, stopped or started): what a batch read of its speakers
    # before such a message may no longer hold for the messages after it (`dispatch_all`).
    changes_speaker: bool = False
    # Records an update that `Store.updates_together` may hold back, to write it with the batch's
    # others: any other command may read updates, so those held back are written before it runs.
    held_back: bool = False


COMMANDS: dict[str, Spec] = {
    "update": Spec(updates.record_update, frozenset({MEMBER}), "own", held_back=True),
    "blocker": Spec(blockers.open_blocker, frozenset({MEMBER}), "own"),
    "resolve": Spec(blockers.resolve_blocker, SEERS, "none"),
    "blockers": Spec(blockers.list_blockers, SEERS, "named"),
    "updates": Spec(updates.list_updates, SEERS, "named"),
    "status": Spec(status.status, SEERS, "named"),
    "next": Spec(schedule.next_session, SEERS, "named"),
    "ask": Spec(schedule.ask, ANYONE, "context"),
    "quiet": Spec(status.quiet, COACHES, "accessible"),
    "digest": Spec(status.digest, COACHES, "accessible"),
    "export": Spec(export.export, COACHES, "accessible"),
    # The page opens an archived city by name, and tells a coach whose every city left the program so:
    # the link is refused only to a coach of no city at all.
    "dashboard": Spec(dashboard.dashboard_link, COACHES, "coached"),
    "help": Spec(help.help_reply, ANYONE, "none"),
    "join": Spec(join.join, ANYONE, "none", changes_speaker=True),
    "stop": Spec(stop.stop, SEERS, "none", changes_speaker=True),
    "start": Spec(stop.start, SEERS, "none", changes_speaker=True),
}

TOO_LONG = N_(
    "That message has {count} characters; the limit is 8,000. Please shorten it: nothing was saved."
)
TEXT_ONLY = N_(
    "Text only for now: photos, voice notes and files are not saved. Please type your update or question."
)
EMPTY = N_("I got an empty message. Say `/cda help` to see what I can do.")
FAILED = N_(
    "Sorry, something went wrong on my side and nothing was saved. The error is logged for the bot's admins."
)
MISTYPED = N_("I didn't catch that. Did you mean `{command}`?")
MISTYPED_WRITE = N_("I didn't catch that, so nothing was saved. Did you mean `{command}`?")


class Refusal(Exception):
    """A clear no, sent back as the reply; nothing the speaker may not see is in it."""


def resolve_speaker(
    store: Store, msg: InboundMessage, found: views.Whereabouts | None = None
) -> tuple[Speaker, City | None]:
    """`found`: the message's whereabouts when they were read already (for a batch, in one statement)."""
    if found is None:
        found = views.whereabouts(store, *msg.asked)
    return speaker_of(found, msg.sender), found.channel_city


def speaker_of(found: views.Whereabouts, sender: str) -> Speaker:
    """Who `sender` is where they speak (`found`: their whereabouts there), and what they may see."""
    person, city, channel_city = found.person, found.city, found.channel_city
    if person is not None:
        role = SpeakerRole(person.role)
        if role == MEMBER:
            ids = [city.id] if city and city.id is not None else []
            return Speaker(sender, role, person.name, city, ids)
        return Speaker(sender, role, person.name, None, found.accessible or [])
    # Anyone speaking in a bound channel counts as a member of its city, except on WhatsApp,
    # where a number must be on the roster before anything it sends is stored.
    if channel_city is not None and channel_city.id is not None and platform_of(sender) != "whatsapp":
        return Speaker(sender, MEMBER, None, channel_city, [channel_city.id])
    return Speaker(sender, GUEST)


def language_of(speaker: Speaker, channel_city: City | None) -> str:
    """A member hears the city's language; a coach, the language of the city's channel they speak in."""
    city = speaker.city or channel_city
    return city.language if city else "en"


def refuse_role(t: Translator, command: str, speaker: Speaker) -> Refusal:
    _ = t.gettext
    if speaker.role == GUEST:
        return Refusal(_(help.UNKNOWN))
    if speaker.role == MEMBER:
        return Refusal(
            _("`/cda {command}` is for coaches. Say `/cda help` to see what you can do.").format(
                command=command
            )
        )
    return Refusal(
        _(
            "Updates and blockers are posted by city team members; you can read them with `/cda updates` and "
            "`/cda blockers`."
        )
    )


def own_city_only(t: Translator, own: City) -> Refusal:
    return Refusal(t.gettext("You can only see your own city's data ({city}).").format(city=own.name))


def not_coached(t: Translator, name: str) -> Refusal:
    return Refusal(
        t.gettext("'{name}' is not one of the cities you coach. Say `/cda status` to see yours.").format(
            name=name
        )
    )


def named_scope(
    t: Translator,
    store: Store,
    speaker: Speaker,
    ref: str | None,
    channel_city: City | None,
    command: str,
) -> list[City]:
    """The city `ref` names, if the speaker may see it; words after a city's name are named back."""
    if speaker.role == MEMBER:
        own = speaker.city
        assert own is not None
        if ref is None:
            return [own]
        names = {unaccented(own.slug), unaccented(own.name)}  # as store.find_city compares them
        city, extra = leading_city(ref, lambda name: own if unaccented(name) in names else None)
        # Anything but the member's own city gets the same answer, whether or not such a city exists.
        if city is None:
            raise own_city_only(t, own)
        if extra:
            raise Refusal(_argument_text(t, extra_words(command, extra)))
        return [own]
    if ref is not None:
        city, extra = leading_city(ref, store.find_city)
        if city is None or city.id not in speaker.accessible_ids:
            raise not_coached(t, ref)
        if extra:
            raise Refusal(_argument_text(t, extra_words(command, extra)))
        return [city]
    if channel_city is not None and channel_city.id in speaker.accessible_ids:
        return [channel_city]
    return accessible_scope(t, store, speaker)


MAX_NAME_WORDS = 6  # no city's name is longer; past it, no need to look a city up


def leading_city(ref: str, find: Callable[[str], City | None]) -> tuple[City | None, list[str]]:
    """The city named by the longest run of `ref`'s first words, and the words after it."""
    words = ref.split()
    for count in range(min(len(words), MAX_NAME_WORDS), 0, -1):
        city = find(" ".join(words[:count]))
        if city is not None:
            return city, words[count:]
    return None, words


def question_scope(
    t: Translator, store: Store, speaker: Speaker, text: str, channel_city: City | None
) -> list[City]:
    """A question naming cities is about them, checked as a command naming them is; else its context."""
    if speaker.role == GUEST:
        return context_scope(store, speaker, channel_city)  # a guest sees no city's data, named or not
    cities = store.cities()
    by_name = {city.name: city for city in cities}
    named = [by_name[name] for name in cities_named(text, by_name)]
    if not named:
        return context_scope(store, speaker, channel_city)
    if speaker.role == MEMBER:
        own = speaker.city
        assert own is not None
        if any(city.id != own.id for city in named):
            raise own_city_only(t, own)
        return [own]
    for city in named:
        if city.id not in speaker.accessible_ids:
            raise not_coached(t, city.name)
    return named


def accessible_scope(t: Translator, store: Store, speaker: Speaker, archived: bool = False) -> list[City]:
    everything = views.cities(store, speaker.accessible_ids)
    if not everything:
        raise Refusal(t.gettext(help.NO_CITY_COACHED))
    cities = everything if archived else in_program(everything)
    if not cities:
        raise Refusal(t.gettext(help.NO_CITY_IN_PROGRAM).format(city=everything[0].slug))
    return cities


def context_scope(store: Store, speaker: Speaker, channel_city: City | None) -> list[City]:
    if speaker.city is not None:
        return [speaker.city]
    if channel_city is not None and channel_city.id in speaker.accessible_ids:
        return [channel_city]
    return in_program(views.cities(store, speaker.accessible_ids)) if speaker.accessible_ids else []


def in_program(cities: list[City]) -> list[City]:
    """Those of `cities` that have not left it: what "all my cities" means (an archived one is seen
    where it is named, or in its own channel)."""
    return [city for city in cities if city.archived_at is None]


def dispatch(
    store: Store, msg: InboundMessage, now: datetime, found: views.Whereabouts | None = None
) -> list[Outgoing]:
    """What the bot answers to one message, addressed to who may see it. Writes (an update, a blocker,
    coach notices) go through `store`, in the caller's transaction."""
    speaker, channel_city = resolve_speaker(store, msg, found)
    t = translator(language_of(speaker, channel_city))
    replies = _replies(store, msg, speaker, channel_city, now, t)
    return address(msg, channel_city, replies, t, lambda: reaches_privately(store, msg.sender))


def reaches_privately(store: Store, person: str) -> bool:
    """Whether `person` can be written to directly: not once they removed the bot from their chat with
    it (a Teams personal app), which is never written over unasked."""
    known = store.reference(person)
    return known is None or conversations.gone_reason(known) is None


def dispatch_all(store: Store, messages: list[InboundMessage], now: datetime) -> list[list[Outgoing]]:
    """`dispatch` for each of `messages`, in order, in the caller's transaction, with who speaks where
    read for all of them in one statement; after a message that changes a speaker, each reads its own.
    The updates are written together, before any other command, which may read them."""
    specs = [COMMANDS.get(command_of(msg).name) for msg in messages]
    changing = (n for n, spec in enumerate(specs) if spec is not None and spec.changes_speaker)
    fresh = next(changing, len(messages) - 1) + 1  # read together: up to the first such message
    found: list[views.Whereabouts | None] = [
        *views.whereabouts_of(store, [m.asked for m in messages[:fresh]]),
        *[None] * (len(messages) - fresh),
    ]
    answers: list[list[Outgoing]] = []
    held_back = [spec is not None and spec.held_back for spec in specs]
    with store.updates_together(sum(held_back)):
        for msg, held, where in zip(messages, held_back, found, strict=True):
            if not held:
                store.write_updates()
            answers.append(dispatch(store, msg, now, where))
    return answers


def command_of(msg: InboundMessage, addressed: bool | None = None) -> Command:
    """The command `msg` gives (read as if `addressed` to the bot or not, where that is given). Only
    the start of an overlong text is read: it is refused anyway."""
    return parse(msg.text[: MAX_TEXT + 16], msg.addressed if addressed is None else addressed)


def failure_notice(store: Store, msg: InboundMessage) -> list[Outgoing]:
    """The apology for a message whose handling failed, addressed like any reply."""
    speaker, channel_city = resolve_speaker(store, msg)
    t = translator(language_of(speaker, channel_city))
    return address(msg, channel_city, [Reply(text=t.gettext(FAILED))], t)


def typed_length(text: str) -> int:
    """What counts against the limit: what the person wrote, not the `/cda ` an adapter may add."""
    prefixed = PREFIX.match(text)
    return len(text) - (prefixed.end() if prefixed else 0)


def _replies(
    store: Store,
    msg: InboundMessage,
    speaker: Speaker,
    channel_city: City | None,
    now: datetime,
    t: Translator,
) -> list[Reply]:
    text = msg.text.strip()
    if msg.media:
        # What was attached is not read; a caption still is.
        notice = Reply(text=t.gettext(TEXT_ONLY))
        return [
            notice,
            *(
                _replies(store, msg.model_copy(update={"media": []}), speaker, channel_city, now, t)
                if text
                else []
            ),
        ]
    # Chatter in a shared channel never gets here (`inbox.accept` leaves it alone); what does is a
    # command or a question, and whatever is said to the bot gets an answer.
    command = command_of(msg)
    typed = typed_length(text)
    if typed > MAX_TEXT:
        # The count named is the one checked: a `/cda ` the adapter added is not the person's.
        return [Reply(text=t.gettext(TOO_LONG).format(count=t.number(typed)))]
    if command.name == "empty":
        return [Reply(text=t.gettext(EMPTY))]
    spec = COMMANDS.get(command.name)
    if spec is None and command.suggestion is not None:
        # Only a hint: what the person meant is a guess, and a write is never done on a guess.
        meant = command.suggestion.removeprefix("/cda ").rstrip(":")
        template = MISTYPED_WRITE if meant in WRITES else MISTYPED
        return [Reply(text=t.gettext(template).format(command=command.suggestion))]
    if spec is None:
        return [Reply(text=t.gettext(help.HINT))]
    try:
        request = _request(store, msg, command, spec, speaker, channel_city, now, t)
    except Refusal as refusal:
        # A refusal may name the member's own city, never another one.
        own = [speaker.city.id] if speaker.city is not None and speaker.city.id is not None else []
        return [Reply(text=str(refusal), about=own)]
    reply = spec.handler(request, store)
    # Whatever the handler was given to read, its reply may show: the audience rule goes by that.
    scope = {c.id for c in request.cities if c.id is not None}
    return [reply.model_copy(update={"about": sorted(scope | set(reply.about))})]


def _request(
    store: Store,
    msg: InboundMessage,
    command: Command,
    spec: Spec,
    speaker: Speaker,
    channel_city: City | None,
    now: datetime,
    t: Translator,
) -> Request:
    if speaker.role not in spec.roles:
        raise refuse_role(t, command.name, speaker)
    request = Request(msg, speaker, command.args, now, channel_city=channel_city, t=t)
    if spec.scope == "own":
        assert speaker.city is not None
        request.cities = [speaker.city]
    elif spec.scope == "named":
        listing = _listing(t, command)
        request.cities = named_scope(t, store, speaker, listing.city, channel_city, command.name)
        request.include_all, request.days = listing.include_all, listing.days
    elif spec.scope == "accessible":
        # Export reads its own argument (`updates` or `blockers`).
        request.days = _listing(t, command).days if command.name in TAKES else None
        request.cities = accessible_scope(t, store, speaker)
    elif spec.scope == "coached":
        request.cities = accessible_scope(t, store, speaker, archived=True)
    elif spec.scope == "context":
        request.cities = question_scope(t, store, speaker, command.args, channel_city)
    return request


def _listing(t: Translator, command: Command) -> ListingArgs:
    try:
        return parse_listing(command.args, command.name)
    except ArgumentError as error:
        raise Refusal(_argument_text(t, error)) from None


def _argument_text(t: Translator, error: ArgumentError) -> str:
    # The usage is ours to translate; the other values are what the person typed, shown as typed.
    values = {name: t.gettext(v) if name == "usage" else v for name, v in error.values.items()}
    return t.gettext(error.message).format(**values)
