"""Only the Bot Framework gets in: with an app id, a request whose token is missing, malformed,
expired, forged, for another bot or another service is 401 and stores nothing; without one, only the
Agents Playground or Emulator on this machine (a loopback serviceUrl) is answered."""

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import select

from adapters.teams import auth
from store.models import Update
from tests.teams_harness import (
    APP_ID,
    ISSUER,
    MEMBER_AAD,
    Signer,
    Teams,
    local_teams,
    message,
    teams,
    teams_fakes,
    teams_world,
)

__all__ = ["local_teams", "teams", "teams_fakes", "teams_world"]


def _nothing_stored(run: Teams) -> None:
    time.sleep(0.2)
    assert run.inbox() == 0
    assert run.outbox() == []
    assert run.connector.posts == []


def _unsigned(service_url: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": ISSUER, "aud": APP_ID, "exp": int(time.time()) + 600, "serviceurl": service_url}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_a_valid_token_is_accepted(teams: Teams) -> None:
    response = teams.post(message(teams.service_url, "update: signed and sealed"))
    assert response.status_code == 200
    teams.connector.wait_for(1)
    teams.settle()
    assert teams.inbox() == 1


def test_a_token_within_the_five_minutes_leeway_is_accepted(teams: Teams) -> None:
    token = teams.signer.token(teams.service_url, expires_in=-120)
    assert teams.post(message(teams.service_url, "update: just expired"), token=token).status_code == 200


TOKENS = {
    "wrong audience": lambda s, url: s.token(url, audience="99999999-9999-4999-8999-999999999999"),
    "wrong issuer": lambda s, url: s.token(url, issuer="https://login.evil.example"),
    "expired": lambda s, url: s.token(url, expires_in=-600),
    "serviceurl mismatch": lambda s, url: s.token("https://smba.trafficmanager.net/amer/"),
    "unsigned": lambda s, url: _unsigned(url),
    "forged (another key, same kid)": lambda s, url: Signer(key=rsa.generate_private_key(65537, 2048)).token(
        url
    ),
    "unknown key id": lambda s, url: s.token(url, kid="not-a-published-key"),
    "HS256 with the public key": lambda s, url: jwt.encode(
        {"iss": ISSUER, "aud": APP_ID, "exp": int(time.time()) + 600, "serviceurl": url},
        "not-the-key-but-long-enough-for-hs256",
        algorithm="HS256",
        headers={"kid": s.kid},
    ),
    "malformed": lambda s, url: "not.a.jwt",
    "no serviceurl claim": lambda s, url: jwt.encode(
        {"iss": ISSUER, "aud": APP_ID, "exp": int(time.time()) + 600},
        s.key,
        algorithm="RS256",
        headers={"kid": s.kid},
    ),
}


@pytest.mark.parametrize("case", list(TOKENS))
def test_a_bad_token_is_401_and_stores_nothing(teams: Teams, case: str) -> None:
    token = TOKENS[case](teams.signer, teams.service_url)
    response = teams.post(message(teams.service_url, "update: should not land"), token=token)
    assert response.status_code == 401, response.text
    assert response.json()["error"]
    assert response.headers["www-authenticate"] == "Bearer"
    _nothing_stored(teams)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer \u00e9\u00e9".encode("latin-1")},
    ],
    ids=["no header", "basic", "empty bearer", "not ascii"],
)
def test_no_usable_authorization_header_is_401(teams: Teams, headers: dict[str, Any]) -> None:
    body = json.dumps(message(teams.service_url, "update: anonymous")).encode()
    response = httpx.post(
        f"{teams.url}/api/messages",
        content=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )
    assert response.status_code == 401
    _nothing_stored(teams)


def test_the_token_is_checked_before_the_body_is_read(teams: Teams) -> None:
    # Not JSON at all, and no token: the answer is about the token.
    response = httpx.post(f"{teams.url}/api/messages", content=b"\x00garbage", timeout=10)
    assert response.status_code == 401


def test_a_key_not_endorsed_for_the_channel_is_refused(teams: Teams, monkeypatch: pytest.MonkeyPatch) -> None:
    assert teams.openid is not None
    monkeypatch.setattr(auth, "UNKNOWN_KID_GAP", 0.0)
    teams.openid.endorsements = ["webchat"]
    fetched = teams.openid.fetches
    # The JWKS now publishes the key under a new id, endorsed for another channel only.
    teams.signer.kid = "rolled-key"
    response = teams.post(message(teams.service_url, "update: from the wrong channel"))
    assert response.status_code == 401
    assert teams.openid.fetches == fetched + 1
    _nothing_stored(teams)


def test_a_rolled_key_is_fetched_once_and_accepted(teams: Teams, monkeypatch: pytest.MonkeyPatch) -> None:
    assert teams.openid is not None
    # In production an unknown key id refreshes the keys at most once a minute.
    monkeypatch.setattr(auth, "UNKNOWN_KID_GAP", 0.0)
    assert teams.post(message(teams.service_url, "update: first", activity_id="1")).status_code == 200
    fetched = teams.openid.fetches
    teams.signer.kid = "rolled-key"  # the JWKS now publishes it under its new id
    assert teams.post(message(teams.service_url, "update: second", activity_id="2")).status_code == 200
    assert teams.post(message(teams.service_url, "update: third", activity_id="3")).status_code == 200
    assert teams.openid.fetches == fetched + 1


def test_a_token_sent_again_is_not_checked_again_while_it_lasts(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    decode = jwt.decode
    monkeypatch.setattr(
        auth.jwt, "decode", lambda token, *a, **k: decoded.append(token) or decode(token, *a, **k)
    )
    token = teams.signer.token(teams.service_url)
    for n in range(3):
        activity = message(teams.service_url, f"update: number {n}", activity_id=f"same-token-{n}")
        assert teams.post(activity, token=token).status_code == 200
    assert decoded == [token]
    # Passing once lets only that very token through: the same claims under another signature do not.
    forged = token[: token.rindex(".") + 1] + "A" * 342
    assert teams.post(message(teams.service_url, "update: forged"), token=forged).status_code == 401


def test_a_token_that_passed_is_refused_once_its_key_is_no_longer_published(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "UNKNOWN_KID_GAP", 0.0)
    old = teams.signer.token(teams.service_url)
    assert (
        teams.post(message(teams.service_url, "update: one", activity_id="k1"), token=old).status_code == 200
    )
    teams.signer.kid = "rolled-key"  # the JWKS now publishes the key under this id only
    assert teams.post(message(teams.service_url, "update: two", activity_id="k2")).status_code == 200
    assert (
        teams.post(message(teams.service_url, "update: three", activity_id="k3"), token=old).status_code
        == 401
    )


def test_a_token_that_passed_is_refused_once_it_expires(teams: Teams) -> None:
    # `exp` is in whole seconds: this token has between 1 and 2 s left (with 1, as it was, it could have
    # had a few milliseconds, and a slow machine saw it refused the first time).
    token = teams.signer.token(teams.service_url, expires_in=-auth.LEEWAY_SECONDS + 2)
    assert (
        teams.post(message(teams.service_url, "update: in time", activity_id="e1"), token=token).status_code
        == 200
    )
    expires = jwt.decode(token, options={"verify_signature": False})["exp"] + auth.LEEWAY_SECONDS
    time.sleep(max(0.0, expires - time.time()) + 0.5)
    assert (
        teams.post(message(teams.service_url, "update: too late", activity_id="e2"), token=token).status_code
        == 401
    )


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"type": 5}', b'{"type": "message", "conversation": "x"}', b'{"type": "message"}'],
    ids=["broken", "array", "type", "conversation", "no service url"],
)
def test_a_signed_body_that_is_no_activity_is_refused_not_an_error(teams: Teams, body: bytes) -> None:
    token = teams.signer.token(teams.service_url)
    response = httpx.post(
        f"{teams.url}/api/messages",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code in (400, 401), response.text
    _nothing_stored(teams)


# -- no app id: local development ------------------------------------------------------------------


def test_without_an_app_id_a_loopback_service_gets_its_reply_and_a_repeat_gets_nothing(
    local_teams: Teams,
) -> None:
    body = message(local_teams.service_url, "update: from the playground", activity_id="local-1")
    assert local_teams.post(body, token=None).status_code == 200
    [post] = local_teams.connector.wait_for(1)
    assert "recorded for Alpha" in post.activity["text"]
    assert "authorization" not in post.headers  # the Playground takes no token
    assert local_teams.post(body, token=None).status_code == 200
    local_teams.settle()
    time.sleep(0.3)
    assert len(local_teams.connector.posts) == 1
    assert local_teams.inbox() == 1


def test_without_an_app_id_a_public_service_url_is_refused(local_teams: Teams) -> None:
    body = message("https://smba.trafficmanager.net/amer/", "update: from afar", activity_id="local-2")
    response = local_teams.post(body, token=None)
    assert response.status_code == 401
    _nothing_stored(local_teams)


def test_without_an_app_id_a_forwarded_request_is_refused(local_teams: Teams) -> None:
    body = message(local_teams.service_url, "update: via a proxy", activity_id="local-3")
    response = local_teams.post(body, token=None, headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 401
    _nothing_stored(local_teams)


def test_without_an_app_id_the_emulators_activity_without_a_tenant_is_answered(local_teams: Teams) -> None:
    body = message(
        local_teams.service_url,
        "/cda help",
        activity_id="local-4",
        conversation="emulator-conversation",
        conversation_type="personal",
        mention=False,
        tenant=None,
    )
    assert local_teams.post(body, token=None).status_code == 200
    [post] = local_teams.connector.wait_for(1)
    assert post.conversation == "emulator-conversation"


def test_an_activity_from_another_bot_framework_channel_is_refused(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Bot Framework signs for every channel of the Azure Bot with the same keys: Web Chat and Direct
    # Line (on by default) let whoever holds their secret choose `from.id` and `channelData`, so such an
    # activity could name any Teams person in any tenant. Only Teams' own channel speaks for Teams people.
    assert teams.openid is not None
    # The key as the real JWKS publishes it, endorsed for many channels (under a new id: fetched again).
    monkeypatch.setattr(auth, "UNKNOWN_KID_GAP", 0.0)
    teams.openid.endorsements = ["msteams", "webchat", "directline"]
    teams.signer.kid = "many-channels"
    for channel in ("webchat", "directline"):
        body = message(
            teams.service_url,
            "update: not really Tess",
            activity_id=f"spoof-{channel}",
            conversation=f"{channel}-conversation",
            conversation_type="personal",
            mention=False,
        )
        body["channelId"] = channel
        body["from"] = {"id": MEMBER_AAD, "name": "Tess Teams"}  # a Direct Line client picks this
        body["conversation"] = {"id": f"{channel}-conversation"}
        response = teams.post(body)
        assert response.status_code == 403, response.text
    _nothing_stored(teams)
    with teams.bot.store() as store:
        assert store.session.exec(select(Update).where(Update.text == "not really Tess")).all() == []
