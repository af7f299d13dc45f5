"""Every message the bot can say exists in Spanish and Portuguese, with the same placeholders."""

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import admin
from bot.core.i18n import LOCALE_DIR, translator
from store.models import Update
from tests.conftest import TestBot

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]  # as babel.cfg reads the sources


def source_messages() -> set[str]:
    found: set[str] = set()
    for folder in ("bot", "handlers", "adapters", "scheduler", "web"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / folder, method_map=METHODS, keywords=KEYWORDS
        ):
            found.add(message[0] if isinstance(message, tuple) else message)
    return found


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_template_is_up_to_date_with_the_code() -> None:
    with (LOCALE_DIR / "messages.pot").open("rb") as handle:
        template = {m.id[0] if isinstance(m.id, tuple) else m.id for m in read_po(handle) if m.id}
    assert template == source_messages(), "run `make i18n` and translate what is new"


@pytest.mark.parametrize("language", ["es", "pt"])
def test_catalog_translates_every_message_keeping_placeholders(language: str) -> None:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale=language)
    ids = set()
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        ids.add(message.id[0] if isinstance(message.id, tuple) else message.id)
        originals = message.id if isinstance(message.id, tuple) else (message.id,)
        translations = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(translations), f"untranslated: {message.id!r}"
        for translated in translations:
            assert placeholders(translated) == placeholders(originals[-1]), (message.id, translated)
    assert ids == source_messages()


def test_dates_read_in_each_language() -> None:
    from datetime import date

    assert [translator(lang).date(date(2026, 12, 1)) for lang in ("en", "es", "pt")] == [
        "Tue 1 Dec 2026",
        "mar 1 dic 2026",
        "ter. 1 dez. 2026",
    ]


def test_plurals_follow_the_language() -> None:
    assert translator("es").days_from_today(1) == "mañana"
    assert translator("es").days_from_today(2) == "en 2 días"
    assert translator("pt").days_from_today(-1) == "ontem"
    assert translator("pt").months_away(3) == "em 3 meses"
    assert translator("fr").language == "en"  # an unknown language falls back to English


def test_every_reply_comes_in_the_citys_language(world: TestBot) -> None:
    # Gamma speaks Spanish: refusals, hints, records and views all come in Spanish.
    assert world.say("console:g1", "/cda quiet") == (
        "`/cda quiet` es para coaches. Escribe `/cda help` para ver lo que puedes hacer."
    )
    assert world.say("console:g1", "hola equipo").startswith("No te entendí.")
    assert world.say("console:g1", "update: probamos el piloto").startswith(
        "Avance #4 registrado para Gamma."
    )
    assert (
        world.say("console:g1", "/cda status beta")
        == "Solo puedes ver los datos de tu propia ciudad (Gamma)."
    )
    assert world.say("console:g1", "/cda blockers").startswith("Bloqueos abiertos — Gamma")
    assert "Estado — Gamma" in world.say("console:g1", "/cda status")
    assert world.say("console:g1", "").startswith("Recibí un mensaje vacío.")


# Gamma's replies once it speaks each language, with 1,201 updates this week and one blocker opened
# today: counts grouped as the language writes them ({n}: 1,201), plurals as its rules say (Portuguese
# counts zero as one).
NUMBERS_AND_PLURALS = {
    "es": [
        ("console:g1", "/cda status", "Avances en 7 días: {n}\nBloqueos abiertos: 1"),
        ("console:g1", "/cda blockers", "(hoy) por Gil Gamma"),
        ("console:coach-g", "/cda digest", "*Gamma* — {n} avances esta semana"),
        ("console:coach-g", "/cda quiet 1", "publicaron un avance en el último 1 día."),
        (
            "console:coach-g",
            "/cda export updates",
            "{n} avances de 1 ciudad, en CSV (cda-updates-20261128.csv).",
        ),
        (
            "console:coach-g",
            "/cda export blockers",
            "1 bloqueo de 1 ciudad, en CSV (cda-blockers-20261128.csv).",
        ),
        ("console:g1", "update: " + "x" * 8100, "Ese mensaje tiene {long} caracteres"),
    ],
    "pt": [
        ("console:g1", "/cda status", "Avanços em 7 dias: {n}\nBloqueios abertos: 1"),
        ("console:g1", "/cda blockers", "(hoje) por Gil Gamma"),
        ("console:coach-g", "/cda digest", "*Gamma* — {n} avanços nesta semana"),
        ("console:coach-g", "/cda quiet 1", "publicaram um avanço no último 1 dia."),
        (
            "console:coach-g",
            "/cda export updates",
            "{n} avanços de 1 cidade, em CSV (cda-updates-20261128.csv).",
        ),
        (
            "console:coach-g",
            "/cda export blockers",
            "1 bloqueio de 1 cidade, em CSV (cda-blockers-20261128.csv).",
        ),
        ("console:g1", "update: " + "x" * 8100, "Essa mensagem tem {long} caracteres"),
    ],
}


@pytest.mark.parametrize("language", sorted(NUMBERS_AND_PLURALS))
def test_every_reply_counts_in_the_citys_language(world: TestBot, language: str) -> None:
    with world.store() as store:
        now = world.clock.now()
        gamma = store.city_by_slug("gamma")
        assert gamma is not None and gamma.id is not None
        gamma.language = language
        store.session.add(gamma)
        store.session.add_all(
            Update(city_id=gamma.id, author="console:g1", platform="console", text=f"#{i}", created_at=now)
            for i in range(1200)
        )
        # A coach of Gamma alone, speaking in Gamma's channel, hears Gamma's language.
        admin.add_coach(store, "console:coach-g", ["gamma"], now, "Coach G")
        admin.bind(store, "slack:T0001:C0003", "gamma", now)
    t = translator(language)
    n, long = t.number(1201), t.number(8108)
    assert "," not in n + long  # grouped the language's way, not the English one
    for sender, text, expected in NUMBERS_AND_PLURALS[language]:
        channel = {"conversation": "slack:T0001:C0003"} if sender == "console:coach-g" else {}
        reply = world.say(sender, text, **channel)
        assert expected.format(n=n, long=long) in reply, (text[:40], reply[:300])


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("es", "`/cda updates [ciudad] [días]` no admite 'foo'."),
        ("pt", "`/cda updates [cidade] [dias]` não aceita 'foo'."),
    ],
)
def test_a_command_refusing_extra_words_names_its_arguments_in_the_citys_language(
    world: TestBot, language: str, expected: str
) -> None:
    # As the help names them: `[city] [days]` in English read as a leftover in a Spanish answer.
    with world.store() as store:
        gamma = store.city_by_slug("gamma")
        assert gamma is not None
        gamma.language = language
        store.session.add(gamma)
    assert world.say("console:g1", "/cda updates gamma 3 foo").startswith(expected)
