"""How dates and times read in replies: `Tue 1 Dec 2026`, `10:00 CST`, in the city's own zone."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(day: date) -> str:
    return f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


def zone_abbreviation(local: datetime) -> str:
    """`CST`; zones without a letter abbreviation (tzdata gives `-05`) read `UTC-05`."""
    name = local.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" else name


def format_time(local: datetime) -> str:
    return f"{local:%H:%M} {zone_abbreviation(local)}"


def format_instant(instant: datetime, zone: str) -> str:
    local = instant.astimezone(ZoneInfo(zone))
    return f"{format_date(local.date())}, {format_time(local)}"


def relative_days(instant: datetime, now: datetime, zone: str) -> str:
    """`today`, `tomorrow`, `in 3 days`, `yesterday`, `5 days ago`, counted in calendar days of `zone`."""
    tz = ZoneInfo(zone)
    days = (instant.astimezone(tz).date() - now.astimezone(tz).date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days == -1:
        return "yesterday"
    return f"in {days} days" if days > 0 else f"{-days} days ago"
