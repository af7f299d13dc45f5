"""Identities are stored in one form, however an admin types them."""

import pytest

from bot.core.identity import IdentityError, normalize_identity

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AAD = "6b2c3a1e-0f5d-4c8e-9a7b-1d2e3f4a5b6c"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("slack:t0001:u0001", "slack:T0001:U0001"),
        ("Console:Ana", "console:ana"),
        # Teams sends its GUIDs in lower case: one pasted in upper case is the same person.
        (f"teams:{TENANT.upper()}:{AAD.upper()}", f"teams:{TENANT}:{AAD}"),
        # A conversation id may be case-sensitive: kept as typed.
        (f"teams:{TENANT.upper()}:19:AbC@thread.tacv2", f"teams:{TENANT}:19:AbC@thread.tacv2"),
        (f"teams:{TENANT}:a:1XyZ", f"teams:{TENANT}:a:1XyZ"),
        (" whatsapp:+573001112233 ", "whatsapp:+573001112233"),
        # As a contact card or a spreadsheet writes it.
        ("whatsapp:+57 300 111 2233", "whatsapp:+573001112233"),
        ("whatsapp:+52 (55) 1234-5678", "whatsapp:+525512345678"),
        ("whatsapp:+57.300.111.2233", "whatsapp:+573001112233"),
    ],
)
def test_an_identity_is_stored_in_one_form(typed: str, stored: str) -> None:
    assert normalize_identity(typed) == stored


@pytest.mark.parametrize(
    "typed", ["teams:", "teams:tenant", "whatsapp:573001112233", "whatsapp:+57 300 abc", "signal:+1555"]
)
def test_a_malformed_identity_is_refused(typed: str) -> None:
    with pytest.raises(IdentityError):
        normalize_identity(typed)


# (as people write it, as WhatsApp gives it in Twilio's `From`, the one form stored)
MOBILES = [
    # Mexico: WhatsApp ids keep the `1` after +52 that the 2019 plan dropped.
    ("whatsapp:+525512345678", "whatsapp:+5215512345678", "whatsapp:+525512345678"),
    ("whatsapp:+523312345678", "whatsapp:+5213312345678", "whatsapp:+523312345678"),  # Guadalajara
    # Argentina: a mobile from abroad is +54 9 …, which WhatsApp uses; people leave the 9 out.
    ("whatsapp:+541123456789", "whatsapp:+5491123456789", "whatsapp:+5491123456789"),
    ("whatsapp:+543514567890", "whatsapp:+5493514567890", "whatsapp:+5493514567890"),  # Córdoba
    # Brazil: accounts older than the ninth digit keep the eight-digit mobile number as their id.
    ("whatsapp:+5561988887777", "whatsapp:+556188887777", "whatsapp:+5561988887777"),  # Brasília
    ("whatsapp:+5511976543210", "whatsapp:+551176543210", "whatsapp:+5511976543210"),  # São Paulo
]


@pytest.mark.parametrize(("written", "from_whatsapp", "stored"), MOBILES)
def test_both_forms_of_a_whatsapp_mobile_are_one_identity(
    written: str, from_whatsapp: str, stored: str
) -> None:
    assert normalize_identity(written) == normalize_identity(from_whatsapp) == stored
    assert normalize_identity(stored) == stored


LEFT_ALONE = [
    "whatsapp:+556132345678",  # a Brasília landline: eight digits starting 2-5 never gained the 9
    "whatsapp:+551145678901",  # a São Paulo landline
    "whatsapp:+558001234567",  # Brazil 0800
    "whatsapp:+5511876543210",  # Brazil, nine digits not starting 9
    "whatsapp:+5255123456789",  # Mexico, eleven digits after +52: not the `1` form
    "whatsapp:+52155123456",  # Mexico, too short to be +52 1 and ten digits
    "whatsapp:+548001234567",  # Argentina 0800: area codes begin 1-3
    "whatsapp:+54911234567",  # Argentina, too short
    "whatsapp:+573001112233",  # Colombia
    "whatsapp:+14155238886",  # United States
    "whatsapp:+351912345678",  # Portugal
]


def test_only_the_other_forms_of_those_mobiles_change() -> None:
    """Landlines, other countries' numbers and numbers already stored as they are stay as typed."""
    other_forms = [
        n for written, from_whatsapp, stored in MOBILES for n in (written, from_whatsapp) if n != stored
    ]
    numbers = LEFT_ALONE + [stored for _, _, stored in MOBILES] + other_forms
    assert [n for n in numbers if normalize_identity(n) != n] == other_forms
