"""Schedule questions, asked as people ask them, answered with the right facts in the city's language
and time. Each row: who asks, the clock, the question, the facts the answer must contain."""

import re
from datetime import UTC, datetime

import pytest
from babel.dates import get_month_names

from bot import admin
from bot.core.clock import parse_instant
from store.models import CoachingSession
from tests.conftest import NOW, TestBot

SAT = "2026-11-28T12:00:00Z"  # Saturday 28 Nov 2026, Learning Loop 2

CITIES = [
    # slug, name, zone, language, pathway, member, session start, rule, until, exceptions
    (
        "riverton",
        "Riverton",
        "America/Chicago",
        "en",
        "implementation",
        "console:chi",
        "2026-09-01T10:00",
        "FREQ=WEEKLY;BYDAY=TU",
        "2027-03-31",
        ["2026-12-22T10:00:00"],
    ),
    (
        "villa",
        "Villa Esperanza",
        "America/Bogota",
        "es",
        "implementation",
        "console:bog",
        "2026-09-03T09:00",
        "FREQ=WEEKLY;BYDAY=TH",
        "2027-03-31",
        [],
    ),
    (
        "sao",
        "São Jerônimo",
        "America/Sao_Paulo",
        "pt",
        "capacity",
        "console:sao",
        "2026-09-02T14:00",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE",
        "2027-03-31",
        [],
    ),
    (
        "thames",
        "Thamesford",
        "Europe/London",
        "en",
        "implementation",
        "console:lon",
        "2026-10-05T09:30",
        "FREQ=WEEKLY;BYDAY=MO",
        "2027-03-31",
        [],
    ),
    (
        "valle",
        "Valle Alto",
        "America/Santiago",
        "es",
        "implementation",
        "console:scl",
        "2027-03-02T10:00",
        "FREQ=WEEKLY;BYDAY=TU",
        "2027-06-30",
        [],
    ),
]


@pytest.fixture
def cohort(testbot: TestBot) -> TestBot:
    now = testbot.clock.now()
    with testbot.store() as store:
        for slug, name, zone, lang, pathway, member, start, rule, until, skipped in CITIES:
            admin.add_city(store, slug, name, zone, now, None, pathway, lang)
            admin.add_member(store, member, slug, now)
            session = admin.add_session(store, slug, start, now, 60, None, rule, until)
            session.exdates = skipped
            store.session.add(session)
    return testbot


CASES = [
    # --- English, Riverton (America/Chicago, Tuesdays 10:00) ---
    (
        "console:chi",
        SAT,
        "when is our next session?",
        ["Next session", "Tue 1 Dec 2026", "10:00–11:00 CST", "in 3 days"],
    ),
    ("console:chi", SAT, "next session?", ["Tue 1 Dec 2026, 10:00–11:00 CST"]),
    ("console:chi", SAT, "nxt sesion", ["Tue 1 Dec 2026"]),
    ("console:chi", SAT, "When is our NEXT SESSION", ["Tue 1 Dec 2026"]),
    ("console:chi", SAT, "wen is the next sesion?", ["Tue 1 Dec 2026"]),
    (
        "console:chi",
        SAT,
        "next meeting and the one after?",
        ["Tue 1 Dec 2026", "The one after", "Tue 8 Dec 2026"],
    ),
    ("console:chi", SAT, "how long until our next session?", ["in 3 days"]),
    (
        "console:chi",
        SAT,
        "what's on this week?",
        [
            "This week (Mon 23 Nov 2026 – Sun 29 Nov 2026)",
            "No more coaching sessions this week",
            "Tue 1 Dec 2026",
            "Learning Loop 2: Solution Build",
        ],
    ),
    (
        "console:chi",
        SAT,
        "sessions next week?",
        ["Week of Mon 30 Nov 2026 – Sun 6 Dec 2026", "Tue 1 Dec 2026, 10:00"],
    ),
    ("console:chi", SAT, "any session on tuesday?", ["Sessions on Tue 1 Dec 2026", "10:00–11:00 CST"]),
    (
        "console:chi",
        SAT,
        "sessions on 22 dec?",
        ["No coaching session on Tue 22 Dec 2026", "The next one", "Tue 29 Dec 2026"],
    ),
    ("console:chi", SAT, "session tomorrow?", ["No coaching session on Sun 29 Nov 2026", "Tue 1 Dec 2026"]),
    ("console:chi", SAT, "sessions on 2026-12-08?", ["Sessions on Tue 8 Dec 2026"]),
    (
        "console:chi",
        SAT,
        "when does LL2 end?",
        ["Learning Loop 2: Solution Build ends: January 2027", "in 2 months"],
    ),
    ("console:chi", SAT, "LL2 end?", ["ends: January 2027"]),
    (
        "console:chi",
        SAT,
        "when does learning loop 3 start",
        ["Learning Loop 3: Scale and Launch starts: February 2027", "in 3 months"],
    ),
    ("console:chi", SAT, "ll3 start", ["starts: February 2027"]),
    ("console:chi", SAT, "when did scoping end?", ["Scoping phase ended: August 2026"]),
    (
        "console:chi",
        SAT,
        "what phase are we in?",
        [
            "You are in Learning Loop 2: Solution Build (November 2026 – January 2027)",
            "It involves:",
            "Next: Learning Loop 3: Scale and Launch, from February 2027",
        ],
    ),
    (
        "console:chi",
        SAT,
        "what should we be doing now?",
        ["Learning Loop 2", "Translating prototype learnings"],
    ),
    (
        "console:chi",
        SAT,
        "when is the Baltimore convening?",
        ["Baltimore convening: January 2027, exact dates not announced yet"],
    ),
    ("console:chi", SAT, "how long until the convening?", ["January 2027", "in 2 months"]),
    ("console:chi", SAT, "when is the convning", ["January 2027"]),
    (
        "console:chi",
        SAT,
        "when is the site visit?",
        ["In-city site visit (two days): was between Tue 1 Sep 2026 and Fri 16 Oct 2026"],
    ),
    (
        "console:chi",
        SAT,
        "when is demo day?",
        [
            "Demo day: during Learning Loop 3: Scale and Launch (February 2027 – March 2027); "
            "exact date not announced yet"
        ],
    ),
    (
        "console:chi",
        SAT,
        "when is the MVP workshop?",
        ["MVP workshop: during Learning Loop 2: Solution Build"],
    ),
    (
        "console:chi",
        SAT,
        "peer clinic?",
        [
            "risks, assumptions and readiness: was during Scoping phase",
            "sustainability: during Learning Loop 3",
        ],
    ),
    ("console:chi", SAT, "mayor check-ins?", ["dates are set for each city; ask your coach"]),
    (
        "console:chi",
        SAT,
        "when was the program launch?",
        ["Program launch (virtual): Wed 27 May 2026 (185 days ago)"],
    ),
    (
        "console:chi",
        SAT,
        "what happens in january?",
        [
            "In January 2027:",
            "Learning Loop 2: Solution Build ends",
            "Baltimore convening: January 2027",
            "Your coaching sessions (4):",
            "Tue 5 Jan 2027",
            "Tue 26 Jan 2027",
        ],
    ),
    ("console:chi", SAT, "what happens in march 2027?", ["In March 2027:", "Demo day", "Tue 30 Mar 2027"]),
    # A month named from today: this one, the next, the last.
    ("console:chi", SAT, "what's on this month?", ["In November 2026:", "Tue 24 Nov 2026"]),
    ("console:chi", SAT, "sessions next month?", ["In December 2026:", "Tue 1 Dec 2026", "Tue 29 Dec 2026"]),
    ("console:chi", SAT, "what happened last month?", ["In October 2026:", "Tue 27 Oct 2026"]),
    ("console:chi", SAT, "when is the next session this month?", ["Next session", "Tue 1 Dec 2026"]),
    ("console:chi", SAT, "whats on in february?", ["Learning Loop 3: Scale and Launch begins"]),
    (
        "console:chi",
        "2026-11-01T12:00:00Z",
        "sessions on 3 nov?",
        ["Sessions on Tue 3 Nov 2026", "10:00–11:00 CST"],
    ),
    # --- midnight: "tomorrow" is the city's tomorrow ---
    (
        "console:chi",
        "2026-12-01T05:30:00Z",
        "session tomorrow?",
        ["Sessions on Tue 1 Dec 2026", "(tomorrow)"],
    ),
    ("console:lon", "2026-12-01T05:30:00Z", "session tomorrow?", ["No coaching session on Wed 2 Dec 2026"]),
    (
        "console:bog",
        "2026-11-30T02:00:00Z",
        "¿hay sesión mañana?",
        ["No hay sesión de coaching el lun 30 nov 2026"],
    ),
    ("console:lon", "2026-11-30T02:00:00Z", "session tomorrow?", ["No coaching session on Tue 1 Dec 2026"]),
    (
        "console:lon",
        "2026-11-29T23:30:00Z",
        "session today?",
        ["No coaching session on Sun 29 Nov 2026"],
    ),
    (
        "console:lon",
        "2026-11-29T23:30:00Z",
        "session tomorrow?",
        ["Sessions on Mon 30 Nov 2026", "09:30–10:30 GMT"],
    ),
    # --- daylight-saving changes ---
    ("console:chi", "2026-10-26T12:00:00Z", "next session?", ["Tue 27 Oct 2026, 10:00–11:00 CDT"]),
    (
        "console:chi",
        "2026-10-27T16:00:00Z",
        "next session?",
        ["Tue 3 Nov 2026, 10:00–11:00 CST", "in 7 days"],
    ),
    ("console:lon", "2026-10-18T12:00:00Z", "next session?", ["Mon 19 Oct 2026, 09:30–10:30 BST"]),
    (
        "console:lon",
        "2026-10-24T12:00:00Z",
        "next session?",
        ["Mon 26 Oct 2026, 09:30–10:30 GMT", "in 2 days"],
    ),
    ("console:scl", "2027-03-29T12:00:00Z", "¿próxima sesión?", ["mar 30 mar 2027, 10:00–11:00 UTC-03"]),
    (
        "console:scl",
        "2027-04-01T12:00:00Z",
        "¿próxima sesión?",
        ["mar 6 abr 2027, 10:00–11:00 UTC-04", "en 5 días"],
    ),
    # --- Spanish, Villa Esperanza (America/Bogota, Thursdays 09:00) ---
    (
        "console:bog",
        SAT,
        "¿Cuándo es nuestra próxima sesión?",
        ["Próxima sesión", "jue 3 dic 2026", "09:00–10:00 UTC-05", "en 5 días"],
    ),
    ("console:bog", SAT, "proxima sesion", ["jue 3 dic 2026"]),
    ("console:bog", SAT, "cuando es la proxima reunion", ["jue 3 dic 2026"]),
    (
        "console:bog",
        SAT,
        "¿qué hay esta semana?",
        ["Esta semana", "No quedan sesiones de coaching esta semana", "jue 3 dic 2026"],
    ),
    (
        "console:bog",
        SAT,
        "sesiones la próxima semana",
        ["Semana del lun 30 nov 2026 al dom 6 dic 2026", "jue 3 dic 2026"],
    ),
    (
        "console:bog",
        SAT,
        "¿cuándo es el encuentro en Baltimore?",
        ["Encuentro en Baltimore: enero de 2027, las fechas exactas aún no se han anunciado"],
    ),
    ("console:bog", SAT, "¿cuándo es la convocatoria?", ["Encuentro en Baltimore: enero de 2027"]),
    ("console:bog", SAT, "cuánto falta para el demo day", ["Día de demostración", "febrero de 2027"]),
    ("console:bog", SAT, "¿cuándo termina el ciclo 2?", ["termina: enero de 2027", "en 2 meses"]),
    (
        "console:bog",
        SAT,
        "¿en qué fase estamos?",
        ["Están en Ciclo de aprendizaje 2: Construcción de la solución", "Implica:"],
    ),
    (
        "console:bog",
        SAT,
        "¿qué pasa en enero?",
        ["En enero de 2027:", "Encuentro en Baltimore", "jue 7 ene 2027"],
    ),
    ("console:bog", SAT, "¿hay sesión el jueves?", ["Sesiones el jue 3 dic 2026"]),
    ("console:bog", SAT, "¿qué hay el mes que viene?", ["En diciembre de 2026:", "jue 3 dic 2026"]),
    ("console:bog", SAT, "sesiones el 10 de diciembre", ["Sesiones el jue 10 dic 2026"]),
    ("console:bog", SAT, "¿cuándo es la visita?", ["Visita a la ciudad (dos días): fue entre"]),
    ("console:bog", SAT, "cuando empieza el ciclo 3", ["empieza: febrero de 2027"]),
    ("console:bog", SAT, "taller mvp?", ["Taller de MVP: durante Ciclo de aprendizaje 2"]),
    ("console:bog", SAT, "when is our next session?", ["Próxima sesión", "jue 3 dic 2026"]),
    ("console:bog", SAT, "quando é a próxima sessão?", ["Próxima sesión", "jue 3 dic 2026"]),
    # --- Portuguese, São Jerônimo (America/Sao_Paulo, every other Wednesday 14:00, capacity pathway) ---
    (
        "console:sao",
        SAT,
        "quando é a próxima sessão?",
        ["Próxima sessão", "qua. 9 dez. 2026", "14:00–15:00 UTC-03", "em 11 dias"],
    ),
    ("console:sao", SAT, "proxima sessao", ["qua. 9 dez. 2026"]),
    ("console:sao", SAT, "em que fase estamos?", ["Vocês estão em Trilha de fortalecimento de capacidades"]),
    (
        "console:sao",
        SAT,
        "quando é o encontro em Baltimore?",
        ["Encontro em Baltimore: janeiro de 2027, as datas exatas ainda não foram anunciadas"],
    ),
    ("console:sao", SAT, "quando é o demo day?", ["(somente para a trilha de implementação)"]),
    (
        "console:sao",
        SAT,
        "o que acontece em março?",
        ["Em março de 2027:", "termina Trilha de fortalecimento de capacidades"],
    ),
    (
        "console:sao",
        SAT,
        "sessões na próxima semana?",
        ["Não há sessões de coaching nessa semana", "A próxima:", "qua. 9 dez. 2026"],
    ),
    ("console:sao", SAT, "tem sessão amanhã?", ["Não há sessão de coaching em dom. 29 nov. 2026"]),
    ("console:sao", SAT, "o que tem no próximo mês?", ["Em dezembro de 2026:", "qua. 9 dez. 2026"]),
    (
        "console:sao",
        SAT,
        "quando termina o ciclo 2?",
        ["(somente para a trilha de implementação)", "janeiro de 2027"],
    ),
    ("console:sao", SAT, "quanto falta para a próxima sessão?", ["em 11 dias"]),
    ("console:sao", SAT, "¿cuándo es la próxima sesión?", ["Próxima sessão", "qua. 9 dez. 2026"]),
    # --- asked by users and once missed: the program's end and what comes next, loops by number, the
    # last session of the series (not the next one), the latest one held ---
    ("console:chi", SAT, "when does the program end?", ["The program ends: March 2027", "in 4 months"]),
    ("console:chi", SAT, "how long until the program is over?", ["March 2027", "in 4 months"]),
    ("console:chi", SAT, "when did the program start?", ["The program started: Wed 27 May 2026"]),
    ("console:chi", SAT, "when does the coaching program end", ["March 2027"]),
    (
        "console:chi",
        SAT,
        "when does learning loop two end?",
        ["Learning Loop 2: Solution Build ends: January 2027", "in 2 months"],
    ),
    (
        "console:chi",
        SAT,
        "when did the first learning loop end",
        ["Learning Loop 1: Prototype ended: October 2026"],
    ),
    ("console:chi", SAT, "loop three start?", ["Learning Loop 3: Scale and Launch starts: February 2027"]),
    ("console:chi", SAT, "when is the last session?", ["Riverton", "Tue 30 Mar 2027, 10:00–11:00 CDT"]),
    ("console:chi", SAT, "when's our final meeting", ["Tue 30 Mar 2027"]),
    ("console:chi", SAT, "when was our last session?", ["Riverton", "Tue 24 Nov 2026", "4 days ago"]),
    ("console:chi", SAT, "what was the previous session?", ["Tue 24 Nov 2026"]),
    (
        "console:chi",
        SAT,
        "what's next in the program?",
        [
            "MVP workshop: during Learning Loop 2",
            "Baltimore convening: January 2027, exact dates not announced yet",
            "Demo day: during Learning Loop 3",
            "Learning Loop 3: Scale and Launch starts: February 2027 (in 3 months)",
        ],
    ),
    ("console:lon", SAT, "what's the final session?", ["Thamesford", "Mon 29 Mar 2027, 09:30–10:30 BST"]),
    ("console:bog", SAT, "¿cuándo termina el programa?", ["marzo de 2027", "en 4 meses"]),
    ("console:bog", SAT, "cuánto falta para que termine el programa", ["marzo de 2027"]),
    ("console:bog", SAT, "¿cuándo termina el ciclo dos?", ["termina: enero de 2027"]),
    ("console:bog", SAT, "cuando termina el segundo ciclo de aprendizaje", ["termina: enero de 2027"]),
    ("console:bog", SAT, "cuándo empieza el tercer ciclo", ["empieza: febrero de 2027"]),
    ("console:bog", SAT, "¿cuándo es la última sesión?", ["Villa Esperanza", "jue 25 mar 2027"]),
    ("console:bog", SAT, "¿cuándo fue la última sesión?", ["jue 26 nov 2026", "hace 2 días"]),
    ("console:bog", SAT, "¿hay sesión pasado mañana?", ["No hay sesión de coaching el lun 30 nov 2026"]),
    (
        "console:bog",
        SAT,
        "¿qué sigue en el programa?",
        [
            "Encuentro en Baltimore: enero de 2027, las fechas exactas aún no se han anunciado",
            "Ciclo de aprendizaje 3: Escala y lanzamiento empieza: febrero de 2027",
        ],
    ),
    # "What's next?" said as each language says it: no "next" in Spanish or Portuguese.
    ("console:chi", SAT, "what's next?", ["Riverton — Next session", "Tue 1 Dec 2026"]),
    ("console:bog", SAT, "¿qué sigue?", ["Villa Esperanza — Próxima sesión", "jue 3 dic 2026"]),
    ("console:bog", SAT, "¿qué viene ahora?", ["Villa Esperanza — Próxima sesión", "jue 3 dic 2026"]),
    ("console:sao", SAT, "o que vem a seguir?", ["São Jerônimo — Próxima sessão", "qua. 9 dez. 2026"]),
    ("console:sao", SAT, "e o que vem agora?", ["São Jerônimo — Próxima sessão", "qua. 9 dez. 2026"]),
    ("console:scl", SAT, "¿cuál es la última sesión?", ["Valle Alto", "mar 29 jun 2027"]),
    ("console:sao", SAT, "quando termina o programa?", ["março de 2027", "em 4 meses"]),
    ("console:sao", SAT, "quando termina o ciclo dois?", ["(somente para a trilha de implementação)"]),
    ("console:sao", SAT, "qual é a última sessão?", ["São Jerônimo", "qua. 31 mar. 2027"]),
    ("console:sao", SAT, "quando foi a última sessão?", ["qua. 25 nov. 2026", "há 3 dias"]),
    ("console:sao", SAT, "qual foi a sessão anterior?", ["qua. 25 nov. 2026"]),
    (
        "console:sao",
        SAT,
        "o que vem a seguir no programa?",
        [
            "Encontro em Baltimore: janeiro de 2027, as datas exatas ainda não foram anunciadas",
            "março de 2027",
        ],
    ),
]


@pytest.mark.parametrize(
    ("who", "now", "question", "facts"), CASES, ids=[f"{c[0][8:]}-{c[2]}" for c in CASES]
)
def test_schedule_question(cohort: TestBot, who: str, now: str, question: str, facts: list[str]) -> None:
    cohort.clock.set(parse_instant(now))
    answer = cohort.say(who, question)
    for fact in facts:
        assert fact in answer, f"{fact!r} missing from:\n{answer}"


def test_there_are_at_least_sixty_questions() -> None:
    assert len(CASES) >= 60


MONTH_WORDS = sorted(
    {
        re.escape(name.rstrip(".").lower())
        for language in ("en", "es", "pt")
        for width in ("abbreviated", "wide")
        for context in ("format", "stand-alone")
        for name in get_month_names(width, context, language).values()
    },
    key=len,
    reverse=True,
)
DAY_OF_MONTH = re.compile(
    rf"\b\d{{1,2}}\.? (?:de )?(?:{'|'.join(MONTH_WORDS)})\b|\b(?:{'|'.join(MONTH_WORDS)})\.? \d{{1,2}}\b"
)
UNFIXED_QUESTIONS = {
    "en": [
        "when is the Baltimore convening?",
        "how long until the convening?",
        "when is demo day?",
        "when is the MVP workshop?",
        "peer clinic?",
        "when are the mayor check-ins?",
        "when is the scoping workshop?",
        "readiness assessment?",
        "when does LL2 end?",
        "when does ll3 start?",
        "what phase are we in?",
        "when does scoping start?",
        "capacity building?",
        "when does the program end?",
        "when does learning loop two end?",
    ],
    "es": [
        "¿cuándo es el encuentro en Baltimore?",
        "¿cuándo es el día de demostración?",
        "¿cuándo es el taller mvp?",
        "¿cuándo es la clínica entre pares?",
        "¿cuándo son las reuniones con el alcalde?",
        "¿cuándo termina el ciclo 2?",
        "¿en qué fase estamos?",
        "¿cuándo termina el programa?",
        "¿cuándo termina el ciclo dos?",
    ],
    "pt": [
        "quando é o encontro em Baltimore?",
        "quando é o demo day?",
        "quando é a oficina de mvp?",
        "quando é a clínica?",
        "quando são as reuniões com o prefeito?",
        "quando começa o ciclo 3?",
        "em que fase estamos?",
        "quando termina o programa?",
        "quando começa o terceiro ciclo?",
    ],
}
MEMBER_OF = {"en": "console:chi", "es": "console:bog", "pt": "console:sao"}


@pytest.mark.parametrize("now", ["2026-05-01T12:00:00Z", SAT, "2027-01-15T12:00:00Z", "2027-06-01T12:00:00Z"])
@pytest.mark.parametrize("language", ["en", "es", "pt"])
def test_no_day_is_invented_for_an_unfixed_date(cohort: TestBot, language: str, now: str) -> None:
    cohort.clock.set(parse_instant(now))
    for question in UNFIXED_QUESTIONS[language]:
        answer = cohort.say(MEMBER_OF[language], question)
        assert answer and "didn't catch" not in answer, question
        assert not DAY_OF_MONTH.search(answer.lower()), f"{question!r} named a day:\n{answer}"


def test_the_day_pattern_would_catch_an_invented_day() -> None:
    for invented in (
        "Mon 18 Jan 2027",
        "lun 18 ene 2027",
        "seg. 18 jan. 2027",
        "18 de janeiro",
        "January 18",
    ):
        assert DAY_OF_MONTH.search(invented.lower()), invented


@pytest.mark.parametrize(
    "text",
    ["the team met yesterday and it went well", "thanks everyone!", "great work on the pilot today team"],
)
def test_chatter_is_not_taken_for_a_question(cohort: TestBot, text: str) -> None:
    assert "didn't catch" in cohort.say("console:chi", text)


def test_someone_unknown_gets_program_answers_but_no_sessions(cohort: TestBot) -> None:
    assert "January 2027" in cohort.say("console:nobody", "when is the Baltimore convening?")
    assert "don't know which city" in cohort.say("console:nobody", "when is our next session?")


def test_coach_of_several_cities_gets_each_citys_next_session(cohort: TestBot) -> None:
    with cohort.store() as store:
        admin.add_coach(store, "console:coach", ["riverton", "villa"], datetime.now(UTC))
    answer = cohort.say("console:coach", "when is the next session?")
    assert "Riverton — Next session" in answer and "Villa Esperanza — Next session" in answer


def test_a_long_text_is_no_schedule_question(cohort: TestBot) -> None:
    long_text = "when is our next session? " + "we tried many things this week and learned a lot " * 12
    assert len(long_text) > 500
    assert "didn't catch" in cohort.say("console:chi", long_text)


LAST_SESSION = {
    # who, question, the series' last session, the next one (which is not the answer)
    "en": ("console:chi", "when is the last session?", "Tue 30 Mar 2027", "Tue 1 Dec 2026"),
    "es": ("console:bog", "¿cuándo es la última sesión?", "jue 25 mar 2027", "jue 3 dic 2026"),
    "pt": ("console:sao", "qual é a última sessão?", "qua. 31 mar. 2027", "qua. 9 dez. 2026"),
}


@pytest.mark.parametrize("language", ["en", "es", "pt"])
def test_the_last_session_is_the_last_of_the_series_not_the_next_one(cohort: TestBot, language: str) -> None:
    who, question, last, upcoming = LAST_SESSION[language]
    answer = cohort.say(who, question)
    assert last in answer and upcoming not in answer, answer


def test_the_last_session_of_a_series_without_an_end_is_not_made_up(cohort: TestBot) -> None:
    with cohort.store() as store:
        admin.add_city(store, "open", "Openfield", "Europe/Lisbon", cohort.clock.now())
        admin.add_member(store, "console:open", "open", cohort.clock.now())
        city = store.city_by_slug("open")
        assert city is not None and city.id is not None
        # What an older calendar import may have stored: a weekly rule that never ends.
        store.add_session(
            CoachingSession(
                city_id=city.id, start_local=datetime(2026, 9, 7, 10), rrule="FREQ=WEEKLY", created_at=NOW
            )
        )
    answer = cohort.say("console:open", "when is the last session?")
    assert "no end date" in answer and not DAY_OF_MONTH.search(answer.lower()), answer


def test_nothing_next_once_the_program_is_over(cohort: TestBot) -> None:
    cohort.clock.set(parse_instant("2027-06-01T12:00:00Z"))
    answer = cohort.say("console:chi", "what's next in the program?")
    assert "Nothing more is planned" in answer and "2026" not in answer


# Every answer about a city's own schedule says which city it is about, in whatever language.
ABOUT_THE_CITY = [
    "when is our next session?",
    "what's on this week?",
    "sessions next week?",
    "session tomorrow?",
    "sessions on 2026-12-08?",
    "what happens in january?",
    "what happens in june 2027?",
    "what's on this month?",
    "what phase are we in?",
    "when is the last session?",
    "when was our last session?",
    "¿cuándo es nuestra próxima sesión?",
    "quando é a próxima sessão?",
]


@pytest.mark.parametrize("question", ABOUT_THE_CITY)
@pytest.mark.parametrize("who", [city[5] for city in CITIES])
def test_every_answer_about_a_citys_schedule_names_the_city(cohort: TestBot, who: str, question: str) -> None:
    name = next(city[1] for city in CITIES if city[5] == who)
    (reply,) = cohort.send(who, question)
    assert name in reply.text, reply.text
    with cohort.store() as store:
        city = store.find_city(name)
        assert city is not None
        assert reply.about == [city.id]


@pytest.fixture
def coach(cohort: TestBot) -> TestBot:
    with cohort.store() as store:
        admin.add_coach(store, "console:coach", ["riverton", "villa"], cohort.clock.now())
    return cohort


@pytest.mark.parametrize(
    ("question", "city", "fact"),
    [
        ("when is the next session in Villa Esperanza?", "Villa Esperanza", "Thu 3 Dec 2026, 09:00"),
        ("villa esperanza's next session?", "Villa Esperanza", "Thu 3 Dec 2026"),
        ("¿cuándo es la próxima sesión de Villa Esperanza?", "Villa Esperanza", "Thu 3 Dec 2026"),
        ("quando é a próxima sessão em riverton?", "Riverton", "Tue 1 Dec 2026, 10:00"),
        ("sessions next week in Riverton?", "Riverton", "Tue 1 Dec 2026"),
        ("when is the last session in Villa Esperanza?", "Villa Esperanza", "Thu 25 Mar 2027"),
        ("what phase is Riverton in?", "Riverton", "Learning Loop 2"),
    ],
)
def test_a_coach_asking_about_a_coached_city_gets_that_city_named(
    coach: TestBot, question: str, city: str, fact: str
) -> None:
    (reply,) = coach.send("console:coach", question)
    assert city in reply.text and fact in reply.text, reply.text
    other = "Riverton" if city == "Villa Esperanza" else "Villa Esperanza"
    assert other not in reply.text, reply.text
    with coach.store() as store:
        named = store.find_city(city)
        assert named is not None
        assert reply.about == [named.id]


def test_a_coach_asking_about_a_city_they_do_not_coach_is_refused(coach: TestBot) -> None:
    answer = coach.say("console:coach", "when is the next session in Thamesford?")
    assert "not one of the cities you coach" in answer
    assert "Mon 30 Nov 2026" not in answer and "Tue 1 Dec 2026" not in answer


@pytest.mark.parametrize(
    ("who", "question", "refusal"),
    [
        (
            "console:bog",
            "when is the next session in Riverton?",
            "Solo puedes ver los datos de tu propia ciudad",
        ),
        (
            "console:chi",
            "when is the next session in Villa Esperanza?",
            "You can only see your own city's data",
        ),
        (
            "console:chi",
            "¿cuándo es la última sesión de Thamesford?",
            "You can only see your own city's data",
        ),
        (
            "console:sao",
            "what's on this week in Riverton?",
            "Você só pode ver os dados da sua própria cidade",
        ),
        ("console:lon", "when does Valle Alto's program end?", "You can only see your own city's data"),
    ],
)
def test_a_member_asking_about_another_city_is_told_they_see_only_their_own(
    cohort: TestBot, who: str, question: str, refusal: str
) -> None:
    (reply,) = cohort.send(who, question)
    assert reply.text.startswith(refusal), reply.text
    with cohort.store() as store:
        own = store.person(who)
        assert own is not None
        assert reply.about == [own.city_id]


def test_a_member_naming_their_own_city_gets_the_answer(cohort: TestBot) -> None:
    assert "Riverton — Next session: Coaching session: Tue 1 Dec 2026" in cohort.say(
        "console:chi", "when is the next session in Riverton?"
    )


def test_a_city_named_like_program_vocabulary_leaves_the_question_about_the_program(cohort: TestBot) -> None:
    with cohort.store() as store:
        admin.add_city(store, "baltimore", "Baltimore", "America/New_York", cohort.clock.now())
    answer = cohort.say("console:chi", "when is the Baltimore convening?")
    assert "Baltimore convening: January 2027, exact dates not announced yet" in answer
