"""What the bot says when it is installed: in a team or group chat, the exact `cda-bot bind` line an
admin runs for that conversation; in a personal chat, the person's identity for the roster."""

from bot.core.i18n import LANGUAGES, N_, translator
from bot.core.messages import Reply

WELCOME_SHARED = N_(
    "Hello! I'm cda-bot, the City Data Alliance bot. To link this conversation to its city, an admin "
    "runs:\n`cda-bot bind {conversation} --city SLUG`\nThen mention me here with `update: …`, "
    "`blocker: …` or `/cda help`."
)
WELCOME_PERSONAL = N_(
    "Hello! I'm cda-bot, the City Data Alliance bot. Say `/cda help` to see what I can do for you. "
    "An admin adds you to your city with `cda-bot member add {person} --city SLUG`."
)


def language_of(locale: str | None) -> str:
    language = (locale or "").split("-")[0].lower()
    return language if language in LANGUAGES else "en"


def welcome(conversation: str, person: str | None, locale: str | None = None) -> Reply:
    t = translator(language_of(locale))
    if person is not None:
        text = t.gettext(WELCOME_PERSONAL).format(person=person)
    else:
        text = t.gettext(WELCOME_SHARED).format(conversation=conversation)
    return Reply(text=text, language=t.language)


# A number not on any roster: the bot cannot know its language, so all three are said.
JOIN_HINT = (
    "Hi! This number is not on a City Data Alliance city team yet, so nothing you send is saved. "
    "Ask your coach for your city's join code and send `join CODE`, or to add this number to the "
    "roster.\n"
    "¡Hola! Este número aún no está en un equipo de ciudad de City Data Alliance: no se guarda nada de "
    "lo que envías. Pide a tu coach el código de tu ciudad y envía `join CÓDIGO`, o que agregue este "
    "número a la lista.\n"
    "Olá! Este número ainda não está em uma equipe de cidade da City Data Alliance: nada do que você "
    "envia é salvo. Peça ao seu coach o código da sua cidade e envie `join CÓDIGO`, ou que adicione "
    "este número à lista."
)
