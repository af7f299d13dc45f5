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
