"""A session nobody named is called "Coaching session" in the city's language wherever it is shown; a
title someone gave stays as given."""

from datetime import UTC, datetime, timedelta

import pytest

from bot import admin
from bot.calendar.ics import export_calendar, import_calendar
from bot.calendar.sessions import DEFAULT_TITLE
from scheduler.planner import plan
from tests.conftest import NOW, TestBot

FIRST = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # Tue 1 Dec 2026, 10:00 in Chicago

LANGUAGES = [
    ("en", "Reminder: Coaching session", "Coaching session starts"),
    ("es", "Recordatorio: Sesión de coaching", "Sesión de coaching empieza"),
    ("pt", "Lembrete: Sessão de coaching", "Sessão de coaching começa"),
]


def city_with_sessions(bot: TestBot, language: str) -> None:
    with bot.store() as store:
        admin.add_city(store, "home", "Home", "America/Chicago", NOW, language=language)
        admin.add_member(store, "console:home-member", "home", NOW)
        admin.add_session(store, "home", "2026-12-01T10:00", NOW)
        admin.add_session(store, "home", "2026-12-03T10:00", NOW, 60, "Taller MVP")


@pytest.mark.parametrize(("language", "title", "line"), LANGUAGES)
def test_a_reminder_names_the_default_session_in_the_citys_language(
    testbot: TestBot, language: str, title: str, line: str
) -> None:
    city_with_sessions(testbot, language)
    with testbot.store() as store:
        plan(store, FIRST - timedelta(minutes=30))
        (reminder,) = [r for r in store.outbox() if r.kind == "reminder-60"]
    assert reminder.payload["title"] == title and line in reminder.payload["text"]
    with testbot.store() as store:
        plan(store, FIRST + timedelta(days=2) - timedelta(minutes=30))
        titles = [r.payload["title"] for r in store.outbox() if r.kind == "reminder-60"]
    assert titles[-1].endswith(": Taller MVP")  # a given title is never translated


@pytest.mark.parametrize(("language", "_title", "line"), LANGUAGES[1:])
def test_an_answer_names_the_default_session_in_the_citys_language(
    testbot: TestBot, language: str, _title: str, line: str
) -> None:
    city_with_sessions(testbot, language)
    answer = testbot.say("console:home-member", "/cda next")
    assert line.rsplit(" ", 1)[0] + ": " in answer and "Taller MVP: " in answer


def test_the_export_writes_the_default_in_the_citys_language_and_reads_back_as_the_default(
    testbot: TestBot,
) -> None:
    city_with_sessions(testbot, "es")
    with testbot.store() as store:
        admin.add_city(store, "other", "Other", "America/Chicago", NOW, language="en")
        home, other = store.city_by_slug("home"), store.city_by_slug("other")
        assert home is not None and other is not None
        exported = export_calendar(home, store.sessions_of(home.id), NOW)  # type: ignore[arg-type]
        assert "SUMMARY:Sesión de coaching" in exported.decode()
        import_calendar(store, other, exported, NOW)
        titles = sorted(s.title for s in store.sessions_of(other.id))  # type: ignore[arg-type]
        assert titles == [DEFAULT_TITLE, "Taller MVP"]
        assert "SUMMARY:Coaching session" in export_calendar(other, store.sessions_of(other.id), NOW).decode()  # type: ignore[arg-type]
