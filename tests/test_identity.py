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
    ],
)
def test_an_identity_is_stored_in_one_form(typed: str, stored: str) -> None:
    assert normalize_identity(typed) == stored


@pytest.mark.parametrize("typed", ["teams:", "teams:tenant", "whatsapp:573001112233", "signal:+1555"])
def test_a_malformed_identity_is_refused(typed: str) -> None:
    with pytest.raises(IdentityError):
        normalize_identity(typed)
