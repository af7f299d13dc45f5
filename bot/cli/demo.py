"""Sample data for `cda-bot demo`: three fictional cities in different zones and languages."""

from datetime import datetime, timedelta

from bot import admin
from bot.calendar.program import default_document
from store.models import Blocker
from store.repo import Store

DEMO_USER = "console:ana"
DEMO_COACH = "console:coach"

CITIES = [
    # slug, name, zone, country, language, pathway, conversation bound to the city
    ("riverton", "Riverton", "America/Chicago", "US", "en", "implementation", "slack:T0001:C0001"),
    ("villa-esperanza", "Villa Esperanza", "America/Bogota", "CO", "es", "implementation", None),
    (
        "sao-jeronimo",
        "São Jerônimo",
        "America/Sao_Paulo",
        "BR",
        "pt",
        "capacity",
        "teams:72f988bf-86f1-41af-91ab-2d7cd011db47:19:demo-channel@thread.tacv2",
    ),
]
MEMBERS = [
    ("console:ana", "riverton", "Ana Whitfield"),
    ("slack:T0001:U0001", "riverton", "Dana Brooks"),
    ("whatsapp:+573001112233", "villa-esperanza", "Camila Rojas"),
    ("whatsapp:+573001112244", "villa-esperanza", "Andrés Gómez"),
    ("console:camila", "villa-esperanza", "Camila Rojas (terminal)"),
    (
        "teams:72f988bf-86f1-41af-91ab-2d7cd011db47:00000000-0000-0000-0000-0000000000a1",
        "sao-jeronimo",
        "João Pereira",
    ),
    ("console:joao", "sao-jeronimo", "João Pereira (terminal)"),
]
SESSIONS = [
    ("riverton", "2026-09-01T10:00", "FREQ=WEEKLY;BYDAY=TU", "Weekly coaching"),
    ("villa-esperanza", "2026-09-03T09:00", "FREQ=WEEKLY;BYDAY=TH", "Sesión de coaching"),
    ("sao-jeronimo", "2026-09-02T14:00", "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE", "Sessão de coaching"),
]


def seed(store: Store, now: datetime) -> bool:
    """Add the demo cities, people and sessions; False when they are there already."""
    if store.city_by_slug(CITIES[0][0]) is not None:
        return False
    if store.program_document() is None:
        document = default_document()
        store.save_program(document["cohort"], document, now)
    for slug, name, zone, country, language, pathway, conversation in CITIES:
        admin.add_city(store, slug, name, zone, now, country, pathway, language)
        if conversation:
            admin.bind(store, conversation, slug, now)
    for identity, slug, name in MEMBERS:
        admin.add_member(store, identity, slug, now, name)
    admin.add_coach(store, DEMO_COACH, [], now, "Morgan Lee (coach)")
    admin.add_admin(store, "console:admin", now, "Program admin")
    for slug, start, rule, title in SESSIONS:
        admin.add_session(store, slug, start, now, 60, title, rule, "2027-03-31")
    # A little history so the coach views have something to show.
    riverton = store.city_by_slug("riverton")
    esperanza = store.city_by_slug("villa-esperanza")
    assert riverton and riverton.id and esperanza and esperanza.id
    store.add_update(
        riverton.id,
        "slack:T0001:U0001",
        "Interviewed 6 frontline staff about the pothole intake form",
        "slack",
        now - timedelta(days=12),
    )
    store.add_blocker(
        Blocker(
            city_id=esperanza.id,
            author="whatsapp:+573001112233",
            text="Esperando el acuerdo de intercambio de datos con Movilidad",
            opened_at=now - timedelta(days=16),
        )
    )
    return True
