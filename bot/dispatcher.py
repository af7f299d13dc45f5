"""The one dispatcher: dedupe, who is speaking, which city, may they, which handler."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from bot.clock import Clock
from bot.commands import Command, parse, parse_listing
from bot.identity import platform_of
from bot.messages import MAX_TEXT, InboundMessage, Reply
from bot.request import Request, Speaker, SpeakerRole
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
    # accessible: every city the speaker may see · none: the handler needs no city
    scope: str


COMMANDS: dict[str, Spec] = {
    "update": Spec(updates.record_update, frozenset({MEMBER}), "own"),
    "blocker": Spec(blockers.open_blocker, frozenset({MEMBER}), "own"),
    "resolve": Spec(blockers.resolve_blocker, SEERS, "none"),
    "blockers": Spec(blockers.list_blockers, SEERS, "named"),
    "updates": Spec(updates.list_updates, SEERS, "named"),
    "status": Spec(status.status, SEERS, "named"),
    "next": Spec(schedule.next_session, SEERS, "named"),
    "quiet": Spec(status.quiet, COACHES, "accessible"),
    "digest": Spec(status.digest, COACHES, "accessible"),
    "export": Spec(export.export, COACHES, "accessible"),
    "help": Spec(help.help_reply, ANYONE, "none"),
}

TOO_LONG = "That message has {n:,} characters; the limit is 8,000. Please shorten it: nothing was saved."
EMPTY = "I got an empty message. Say `/cda help` to see what I can do."
FAILED = "Sorry, something went wrong on my side and nothing was saved. Please try again in a moment."


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


def refuse_role(command: str, speaker: Speaker) -> Refusal:
    if speaker.role == GUEST:
        return Refusal(help.GUEST[0])
    if speaker.role == MEMBER:
        return Refusal(f"`/cda {command}` is for coaches. Say `/cda help` to see what you can do.")
    return Refusal(
        "Updates and blockers are posted by city team members; "
        "you can read them with `/cda updates` and `/cda blockers`."
    )


def named_scope(store: Store, speaker: Speaker, ref: str | None, channel_city: City | None) -> list[City]:
    if speaker.role == MEMBER:
        own = speaker.city
        assert own is not None
        if ref is None or ref.lower() in (own.slug, own.name.lower()):
            return [own]
        raise Refusal(f"You can only see your own city's data ({own.name}).")
    if ref is not None:
        city = store.find_city(ref)
        if city is None or city.id not in speaker.accessible_ids:
            raise Refusal(f"'{ref}' is not one of the cities you coach. Say `/cda status` to see yours.")
        return [city]
    if channel_city is not None and channel_city.id in speaker.accessible_ids:
        return [channel_city]
    return accessible_scope(store, speaker)


def accessible_scope(store: Store, speaker: Speaker) -> list[City]:
    cities = store.cities(speaker.accessible_ids)
    if not cities:
        raise Refusal("You don't coach any city yet: ask an admin to add you with `cda-bot coach add`.")
    return cities


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
            return [Reply(text=FAILED)]

    def _dispatch(self, msg: InboundMessage, store: Store) -> list[Reply]:
        now = self.clock.now()
        if not store.mark_processed(msg.platform, msg.message_id, now):
            log.info(
                "duplicate message dropped", extra={"platform": msg.platform, "message_id": msg.message_id}
            )
            return []
        if msg.reference is not None:
            store.save_reference(msg.conversation, msg.platform, msg.reference, now)
            if msg.direct:
                store.save_reference(msg.sender, msg.platform, msg.reference, now)
        text = msg.text.strip()
        if len(text) > MAX_TEXT:
            return [Reply(text=TOO_LONG.format(n=len(text)))]
        command = parse(text)
        if command.name == "empty":
            return [Reply(text=EMPTY)]
        spec = COMMANDS.get(command.name)
        if spec is None:
            return [Reply(text=help.HINT)]
        speaker, channel_city = resolve_speaker(store, msg)
        try:
            request = self._request(store, msg, command, spec, speaker, channel_city, now)
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
    ) -> Request:
        if speaker.role not in spec.roles:
            raise refuse_role(command.name, speaker)
        request = Request(msg, speaker, command.args, now, channel_city=channel_city)
        if spec.scope == "own":
            assert speaker.city is not None
            request.cities = [speaker.city]
        elif spec.scope == "named":
            listing = parse_listing(command.args)
            request.cities = named_scope(store, speaker, listing.city, channel_city)
            request.include_all, request.days = listing.include_all, listing.days
        elif spec.scope == "accessible":
            request.cities = accessible_scope(store, speaker)
            request.days = parse_listing(command.args).days
        return request
