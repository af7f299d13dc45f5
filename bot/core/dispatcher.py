"""The one dispatcher: dedupe, who is speaking, which city and language, may they, which handler."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from bot.core.clock import Clock
from bot.core.commands import Command, parse, parse_listing
from bot.core.i18n import N_, Translator, translator
from bot.core.identity import platform_of
from bot.core.messages import MAX_TEXT, InboundMessage, Reply
from bot.core.request import Request, Speaker, SpeakerRole
from handlers import blockers, export, help, schedule, status, updates
from store.models import City
from store.repo import Store, open_store

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
    # accessible: every city the speaker may see · context: the city of the conversation or speaker,
    # if there is one · none: the handler needs no city
    scope: str


COMMANDS: dict[str, Spec] = {
    "update": Spec(updates.record_update, frozenset({MEMBER}), "own"),
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
    "help": Spec(help.help_reply, ANYONE, "none"),
}

TOO_LONG = N_(
    "That message has {count} characters; the limit is 8,000. Please shorten it: nothing was saved."
)
EMPTY = N_("I got an empty message. Say `/cda help` to see what I can do.")
FAILED = N_("Sorry, something went wrong on my side and nothing was saved. Please try again in a moment.")


class Refusal(Exception):
    """A clear no, sent back as the reply; nothing the speaker may not see is in it."""


def resolve_speaker(store: Store, msg: InboundMessage) -> tuple[Speaker, City | None]:
    channel_city = None if msg.conversation == msg.sender else store.bound_city(msg.conversation)
    person = store.person(msg.sender)
    if person is not None:
        role = SpeakerRole(person.role)
        if role == MEMBER:
            city = store.city(person.city_id) if person.city_id is not None else None
            ids = [city.id] if city and city.id is not None else []
            return Speaker(msg.sender, role, person.name, city, ids), channel_city
        return Speaker(msg.sender, role, person.name, None, store.coached_city_ids(person)), channel_city
    # Anyone speaking in a bound channel counts as a member of its city, except on WhatsApp,
    # where a number must be on the roster before anything it sends is stored.
    if channel_city is not None and channel_city.id is not None and platform_of(msg.sender) != "whatsapp":
        return Speaker(msg.sender, MEMBER, None, channel_city, [channel_city.id]), channel_city
    return Speaker(msg.sender, GUEST), channel_city


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


def named_scope(
    t: Translator, store: Store, speaker: Speaker, ref: str | None, channel_city: City | None
) -> list[City]:
    _ = t.gettext
    if speaker.role == MEMBER:
        own = speaker.city
        assert own is not None
        if ref is None or ref.lower() in (own.slug, own.name.lower()):
            return [own]
        raise Refusal(_("You can only see your own city's data ({city}).").format(city=own.name))
    if ref is not None:
        city = store.find_city(ref)
        if city is None or city.id not in speaker.accessible_ids:
            raise Refusal(
                _("'{name}' is not one of the cities you coach. Say `/cda status` to see yours.").format(
                    name=ref
                )
            )
        return [city]
    if channel_city is not None and channel_city.id in speaker.accessible_ids:
        return [channel_city]
    return accessible_scope(t, store, speaker)


def accessible_scope(t: Translator, store: Store, speaker: Speaker) -> list[City]:
    cities = store.cities(speaker.accessible_ids)
    if not cities:
        raise Refusal(
            t.gettext("You don't coach any city yet: ask an admin to add you with `cda-bot coach add`.")
        )
    return cities


def context_scope(store: Store, speaker: Speaker, channel_city: City | None) -> list[City]:
    if speaker.city is not None:
        return [speaker.city]
    if channel_city is not None and channel_city.id in speaker.accessible_ids:
        return [channel_city]
    return store.cities(speaker.accessible_ids) if speaker.accessible_ids else []


class Dispatcher:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def handle(self, msg: InboundMessage) -> list[Reply]:
        """Process one inbound message once; the replies to send back (none for a duplicate)."""
        try:
            with open_store(self.engine) as store:
                return self._dispatch(msg, store)
        except Exception:
            log.exception("handling failed", extra={"platform": msg.platform, "message_id": msg.message_id})
            return [Reply(text=self._failed_text(msg))]

    def _failed_text(self, msg: InboundMessage) -> str:
        try:
            with open_store(self.engine) as store:
                speaker, channel_city = resolve_speaker(store, msg)
                return translator(language_of(speaker, channel_city)).gettext(FAILED)
        except Exception:
            return FAILED

    def _dispatch(self, msg: InboundMessage, store: Store) -> list[Reply]:
        now = self.clock.now()
        if not store.mark_processed(msg.platform, msg.message_id, now):
            log.info("duplicate dropped", extra={"platform": msg.platform, "message_id": msg.message_id})
            return []
        if msg.reference is not None:
            store.save_reference(msg.conversation, msg.platform, msg.reference, now)
            if msg.direct:
                store.save_reference(msg.sender, msg.platform, msg.reference, now)
        speaker, channel_city = resolve_speaker(store, msg)
        t = translator(language_of(speaker, channel_city))
        text = msg.text.strip()
        # Chatter in a shared channel that is no command or question is people talking to each other:
        # the bot keeps out of it. Whatever is said to the bot gets an answer.
        command = parse(text[: MAX_TEXT + 1], msg.addressed)
        if not msg.addressed and command.name in ("unknown", "empty"):
            return []
        if len(text) > MAX_TEXT:
            return [Reply(text=t.gettext(TOO_LONG).format(count=f"{len(text):,}"))]
        if command.name == "empty":
            return [Reply(text=t.gettext(EMPTY))]
        spec = COMMANDS.get(command.name)
        if spec is None:
            return [Reply(text=t.gettext(help.HINT))]
        try:
            request = self._request(store, msg, command, spec, speaker, channel_city, now, t)
        except Refusal as refusal:
            return [Reply(text=str(refusal))]
        return [spec.handler(request, store)]

    def _request(
        self,
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
            listing = parse_listing(command.args)
            request.cities = named_scope(t, store, speaker, listing.city, channel_city)
            request.include_all, request.days = listing.include_all, listing.days
        elif spec.scope == "accessible":
            request.cities = accessible_scope(t, store, speaker)
            request.days = parse_listing(command.args).days
        elif spec.scope == "context":
            request.cities = context_scope(store, speaker, channel_city)
        return request
