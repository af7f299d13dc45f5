"""Fast local stand-ins for Slack's Web API, Twilio's Messages API and, for Teams, the Bot Connector,
the Bot Framework's OpenID metadata and keys, and Entra's token endpoint, for the inbound benchmark:
every call answered at once, counted by method (GET /counts), and each message's arrival noted under
what the platform's rate limit counts it against (GET /sends): a Slack channel, a Teams conversation,
Twilio's sender number; Twilio's also under their recipient (GET /recipients). With BENCH_LATENCY_MS
set, each message takes that long to be answered, as a platform's API does over the internet.

Teams' keys: the public JWK the benchmark signs its tokens with comes in BENCH_TEAMS_JWK. Entra must be
reached over https (MSAL insists): the benchmark runs a second copy of this app with a certificate."""

import asyncio
import json
import os
import time
from collections import Counter, defaultdict
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

calls: Counter[str] = Counter()
sends: defaultdict[str, list[float]] = defaultdict(list)  # limit key -> arrival times (monotonic s)
# WhatsApp's limit key is the sender, shared by every message: arrivals by recipient too (GET /recipients).
recipients: defaultdict[str, list[float]] = defaultdict(list)
TEAMS_ISSUER = "https://api.botframework.com"  # what the Bot Framework's tokens name as their issuer
LATENCY = float(os.environ.get("BENCH_LATENCY_MS", "0")) / 1000


async def _arrived(key: str) -> None:
    """Note a message's arrival under its limit key, then take the platform's time to answer."""
    sends[key].append(time.monotonic())
    if LATENCY:
        await asyncio.sleep(LATENCY)


async def _api(request: Request) -> Response:
    method = request.path_params["method"]
    calls[method] += 1
    body = await request.body()
    if method == "chat.postMessage":
        await _arrived(f"slack:{json.loads(body)['channel']}")
    if method == "auth.test":
        answer = {"ok": True, "team_id": "T0001", "user_id": "UBOT", "bot_id": "BBOT", "team": "Bench"}
    else:
        answer = {"ok": True, "channel": "C0", "ts": "1700000000.000100"}
    return Response(json.dumps(answer), media_type="application/json")


async def _counts(_: Request) -> Response:
    return JSONResponse(dict(calls))


async def _sends(_: Request) -> Response:
    return JSONResponse(sends)


async def _recipients(_: Request) -> Response:
    return JSONResponse(recipients)


async def _twilio(request: Request) -> Response:
    calls["twilio"] += 1
    form = parse_qs((await request.body()).decode())
    recipients[form["To"][0]].append(time.monotonic())
    await _arrived(f"whatsapp:{form['From'][0]}")
    sid = f"SM{calls['twilio']:032d}"
    return Response(
        json.dumps({"sid": sid, "status": "queued"}), status_code=201, media_type="application/json"
    )


async def _teams_metadata(request: Request) -> Response:
    keys = str(request.url_for("teams_keys"))
    return JSONResponse(
        {"issuer": TEAMS_ISSUER, "jwks_uri": keys, "id_token_signing_alg_values_supported": ["RS256"]}
    )


async def _teams_keys(_: Request) -> Response:
    calls["teams_keys"] += 1
    return JSONResponse({"keys": [json.loads(os.environ["BENCH_TEAMS_JWK"])]})


async def _teams_activity(request: Request) -> Response:
    calls["teams"] += 1
    await request.body()
    await _arrived(f"teams:{request.path_params['conversation']}")
    return JSONResponse({"id": f"reply-{calls['teams']}"}, status_code=201)


async def _teams_conversation(request: Request) -> Response:
    # A personal chat opened for a private answer: Teams gives one id per person.
    calls["teams_conversation"] += 1
    member = json.loads(await request.body())["members"][0]["id"]
    return JSONResponse({"id": f"a:personal-{member}"}, status_code=201)


async def _entra_configuration(request: Request) -> Response:
    base = f"{request.url.scheme}://{request.url.netloc}/{request.path_params['tenant']}"
    return JSONResponse(
        {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
        }
    )


async def _entra_token(request: Request) -> Response:
    calls["entra"] += 1
    await request.body()
    return JSONResponse(
        {"token_type": "Bearer", "expires_in": 3599, "access_token": f"bench-{calls['entra']}"}
    )


app = Starlette(
    routes=[
        Route("/api/{method}", _api, methods=["POST", "GET"]),
        Route("/2010-04-01/Accounts/{account}/Messages.json", _twilio, methods=["POST"]),
        Route("/teams/openid", _teams_metadata, methods=["GET"]),
        Route("/teams/keys", _teams_keys, methods=["GET"], name="teams_keys"),
        Route("/v3/conversations", _teams_conversation, methods=["POST"]),
        Route("/v3/conversations/{conversation}/activities", _teams_activity, methods=["POST"]),
        Route("/v3/conversations/{conversation}/activities/{reply_to}", _teams_activity, methods=["POST"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", _entra_configuration, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", _entra_token, methods=["POST"]),
        Route("/counts", _counts, methods=["GET"]),
        Route("/sends", _sends, methods=["GET"]),
        Route("/recipients", _recipients, methods=["GET"]),
    ]
)
