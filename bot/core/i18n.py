"""Replies in the city's language: gettext catalogs (managed with Babel) and localised dates.

The catalogs are the `.po` files under `bot/core/locale`; they are compiled in memory on first use, so
there is no build step and an edited `.po` takes effect on the next start.
"""

import gettext
import io
import unicodedata
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton
from babel.numbers import format_decimal

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "es", "pt")
DEFAULT_LANGUAGE = "en"


def unaccented(text: str) -> str:
    """Case and accents aside (`Ávila` → `avila`, `actualización` → `actualizacion`): how words people
    type in three languages are compared, whichever way they typed them."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in folded if not unicodedata.combining(c))


@cache
def _catalog(language: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LANGUAGE or not path.exists():
        return gettext.NullTranslations()
    # Babel's catalog reader loads only when a catalog is compiled, not in every process that speaks English.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def N_(message: str) -> str:
    """Marks a text for the catalogs where it is defined; it is translated where it is shown."""
    return message


def zone_abbreviation(local: datetime) -> str:
    """`CST`; zones without a letter abbreviation (tzdata gives `-05`) read `UTC-05`."""
    name = local.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" else name


class Translator:
    """Words, dates and times in one language."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._catalog = _catalog(self.language)

    def gettext(self, message: str) -> str:
        return self._catalog.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return self._catalog.ngettext(singular, plural, count)

    def date(self, day: date) -> str:
        """`Tue 1 Dec 2026` · `mar 1 dic 2026` · `ter. 1 dez. 2026`."""
        return _date(day, self.language)

    def number(self, value: int) -> str:
        """`8,108` · `8108` · `8.108`: grouped as the language writes it."""
        return _number(value, self.language)

    def month(self, day: date) -> str:
        """`January 2027` · `enero de 2027` · `janeiro de 2027`."""
        return format_skeleton("yMMMM", day, locale=self.language)

    def time(self, local: datetime) -> str:
        return f"{local:%H:%M} {zone_abbreviation(local)}"

    def instant(self, instant: datetime, zone: str) -> str:
        local = instant.astimezone(ZoneInfo(zone))
        return f"{self.date(local.date())}, {self.time(local)}"

    def days_from_today(self, days: int) -> str:
        _ = self.gettext
        if days == 0:
            return _("today")
        if days == 1:
            return _("tomorrow")
        if days == -1:
            return _("yesterday")
        if days > 0:
            return self.ngettext("in {count} day", "in {count} days", days).format(count=days)
        return self.ngettext("{count} day ago", "{count} days ago", -days).format(count=-days)

    def relative(self, instant: datetime, now: datetime, zone: str) -> str:
        """Counted in calendar days of the city's zone: tomorrow in Bogotá is not tomorrow in London."""
        tz = ZoneInfo(zone)
        return self.days_from_today((instant.astimezone(tz).date() - now.astimezone(tz).date()).days)

    def months_away(self, months: int) -> str:
        _ = self.gettext
        if months <= 0:
            return _("this month")
        if months == 1:
            return _("next month")
        return self.ngettext("in {count} month", "in {count} months", months).format(count=months)


# Babel takes tens of microseconds a call; a coach's view of a thousand cities shows a few hundred
# distinct dates and counts, each formatted the same way every time.
@lru_cache(maxsize=8192)
def _date(day: date, language: str) -> str:
    return format_date(day, "EEE d MMM y", locale=language)


@lru_cache(maxsize=8192)
def _number(value: int, language: str) -> str:
    return format_decimal(value, locale=language)


@cache
def translator(language: str) -> Translator:
    return Translator(language)


def countdown(instant: datetime, now: datetime, language: str) -> str:
    """`in 52 minutes`, `in 3 hours`: how long until `instant`, as a reminder says it."""
    t = translator(language)
    minutes = max(1, round((instant - now).total_seconds() / 60))
    if minutes >= 90:
        hours = round(minutes / 60)
        return t.ngettext("in {count} hour", "in {count} hours", hours).format(count=hours)
    return t.ngettext("in {count} minute", "in {count} minutes", minutes).format(count=minutes)


def time_span(start: datetime, end: datetime) -> str:
    """`10:00–11:00 CST`; across a clock change each end has its own abbreviation (`01:30 CDT–01:30
    CST`), so an hour in the repeated hour never reads as none."""
    first, last = zone_abbreviation(start), zone_abbreviation(end)
    if first == last:
        return f"{start:%H:%M}–{end:%H:%M} {last}"
    return f"{start:%H:%M} {first}–{end:%H:%M} {last}"
