"""Fast local stand-ins for Slack's Web API and Twilio's Messages API, for the inbound benchmark:
every call answered at once, counted by method (GET /counts)."""

import json
from collections import Counter

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

calls: Counter[str] = Counter()


async def _api(request: Request) -> Response:
    method = request.path_params["method"]
    calls[method] += 1
    await request.body()
    if method == "auth.test":
        answer = {"ok": True, "team_id": "T0001", "user_id": "UBOT", "bot_id": "BBOT", "team": "Bench"}
    else:
        answer = {"ok": True, "channel": "C0", "ts": "1700000000.000100"}
    return Response(json.dumps(answer), media_type="application/json")


async def _counts(_: Request) -> Response:
    return JSONResponse(dict(calls))


async def _twilio(request: Request) -> Response:
    calls["twilio"] += 1
    await request.body()
    sid = f"SM{calls['twilio']:032d}"
    return Response(
        json.dumps({"sid": sid, "status": "queued"}), status_code=201, media_type="application/json"
    )


app = Starlette(
    routes=[
        Route("/api/{method}", _api, methods=["POST", "GET"]),
        Route("/2010-04-01/Accounts/{account}/Messages.json", _twilio, methods=["POST"]),
        Route("/counts", _counts, methods=["GET"]),
    ]
)
