"""`join CODE`: a number on no roster puts itself on a city's team with a code an admin handed out."""

from bot.core.i18n import N_, translator
from bot.core.messages import Reply
from bot.core.request import Request, SpeakerRole
from store.models import Person, Role
from store.repo import Store

WELCOME = N_(
    "Welcome to the {city} team! I'm cda-bot, the City Data Alliance bot. Post progress with "
    "`update: …`, problems with `blocker: …`, and ask things like “when is our next session?”. "
    "I'll also send session reminders here: reply `stop` at any time and I won't send you anything "
    "unprompted (I still answer what you send); `start` turns them back on. Say `/cda help` for more."
)
ALREADY = N_("This number is already on the {city} team. Say `/cda help` to see what you can do.")
ELSEWHERE = N_(
    "This number is already on the {city} team: a join code doesn't move it. Ask an admin if it should "
    "be on another city's team."
)
NOT_FOR_COACHES = N_("You're on the roster as {role} already: join codes are for city team members.")
# The sender is on no roster yet, so the bot cannot know their language: all three are said.
REFUSED = (
    "That join code doesn't work: it may be mistyped, expired, used up or revoked. Ask your coach for "
    "a new one.\n"
    "Ese código no funciona: puede estar mal escrito, vencido, agotado o revocado. Pide uno nuevo a "
    "tu coach.\n"
    "Esse código não funciona: pode estar digitado errado, expirado, esgotado ou revogado. Peça um novo "
    "ao seu coach."
)


def normalize_code(text: str) -> str:
    """What people type: any case, with or without the dash, with spaces around it."""
    compact = "".join(text.split()).upper().replace("-", "")
    return f"{compact[:4]}-{compact[4:]}" if len(compact) == 8 else compact


def join(req: Request, store: Store) -> Reply:
    speaker = req.speaker
    if speaker.role in (SpeakerRole.coach, SpeakerRole.admin):
        return Reply(text=req.t.gettext(NOT_FOR_COACHES).format(role=speaker.role.value))
    if speaker.role == SpeakerRole.member:
        own = speaker.city
        assert own is not None and own.id is not None
        code_city = store.join_code(normalize_code(req.args))
        template = ALREADY if code_city is not None and code_city.city_id == own.id else ELSEWHERE
        return Reply(text=req.t.gettext(template).format(city=own.name), about=[own.id])
    city_id = store.use_join_code(normalize_code(req.args), req.now)
    city = store.city(city_id) if city_id is not None else None
    if city is None or city.id is None:
        return Reply(text=REFUSED)
    store.add_person(Person(identity=speaker.identity, role=Role.member, city_id=city.id, created_at=req.now))
    t = translator(city.language)
    return Reply(text=t.gettext(WELCOME).format(city=city.name), about=[city.id], language=t.language)
