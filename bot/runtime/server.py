"""The HTTP server: one Starlette app, `/healthz`, `/readyz`, and each platform adapter's routes.

A platform joins by being a `PlatformAdapter`: its `routes()` are mounted, `start()`/`stop()` run in the
lifespan, and `send()` makes it a target of the deliverer. The hub starts after the adapters (it sends
through them) and stops before them, once what was accepted and claimed is handled and sent."""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route

from bot.core.messages import Reply
from bot.runtime.delivery import FAILING
from bot.runtime.hub import Hub
from bot.runtime.metrics import RequestMetrics, metrics_route, published, route_template
from bot.runtime.shedding import Shedding

log = logging.getLogger("cda_bot.server")

DRAIN_SECONDS = 20.0
READY_SECONDS = 2.0  # a database that takes longer than this to say `1` is not ready


class PlatformAdapter(Protocol):
    """Optionally `intake_paths`: the routes where its platform posts messages, refused at the door
    past capacity (bot/runtime/shedding.py); and `refusal`, what its platform is answered there
    instead of a 503 (WhatsApp's, which Twilio would not send again)."""

    platform: str

    def describe(self) -> str: ...

    def routes(self) -> list[BaseRoute]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        recipient: str,
        reply: Reply,
        reference: dict[str, Any] | None,
        context: dict[str, Any] | None = None,
    ) -> list[str] | None: ...


class Service(Protocol):
    """Something that runs beside the routes for the server's lifetime (the scheduler, later)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_app(
    hub: Hub,
    adapters: Sequence[PlatformAdapter],
    services: Sequence[Service] = (),
    drain_seconds: float = DRAIN_SECONDS,
    pages: Sequence[BaseRoute] = (),
    metrics: bool = True,
) -> Starlette:
    """`pages`: routes of the bot's own (the coaches' page), mounted beside the adapters'. `metrics`:
    `GET /metrics` and the request metrics behind it (bot/runtime/metrics.py)."""
    for adapter in adapters:
        hub.register(adapter)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        started: list[Service] = []
        hub_started = False
        try:
            for adapter in adapters:
                await adapter.start()
                started.append(adapter)
            await hub.start()
            hub_started = True
            for service in services:
                await service.start()
                started.append(service)
            log.info("server started", extra={"adapters": ",".join(a.platform for a in adapters) or "none"})
            async with published(lambda: hub.backlog):
                yield
        finally:
            # Requests in flight have finished (uvicorn waits for them); the scheduler stops first, then
            # the hub handles and sends what was accepted, then the adapters close.
            for part in reversed(started):
                if part in services:
                    await _stop(part)
            if hub_started:
                await hub.stop(drain_seconds)
            for part in reversed(started):
                if part not in services:
                    await _stop(part)
            log.info("server stopped")

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        backlog = hub.backlog
        try:
            await asyncio.wait_for(asyncio.to_thread(_select_one, hub), READY_SECONDS)
        except Exception as error:
            log.warning("database not reachable", extra={"error": type(error).__name__})
            return JSONResponse(
                {"status": "unavailable", "error": "database unreachable", "backlog": backlog},
                status_code=503,
            )
        body: dict[str, object] = {"status": "ready", "backlog": backlog}
        if (state := hub.deliverer.state) is not None:
            # Ready all the same while the delivery process starts: what arrives is stored, and
            # handled once it runs (past the backlog bound, refused with 503). Not while it keeps
            # dying: a replica that handles would answer sooner.
            body["delivery_process"] = state
            if state == FAILING:
                body.update(status="unavailable", error="delivery process keeps ending")
                return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404 and (known := _without_slash(routes, request)) is not None:
            return RedirectResponse(known, status_code=307)
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)

    async def server_error(request: Request, error: Exception) -> Response:
        # The route's template, not the path asked for: a path can be a secret (a sign-in link of the
        # coaches' page, still unspent when the database failed under it).
        _, route = route_template(routes, request.scope)
        log.error("request failed", exc_info=error, extra={"route": route})
        return JSONResponse({"error": "internal error"}, status_code=500)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if metrics:
        routes.append(metrics_route(hub.engine, lambda: hub.backlog))
    platforms: dict[int, str] = {}  # which adapter's route it is, for the metrics' `platform` label
    for adapter in adapters:
        own = adapter.routes()
        routes.extend(own)
        platforms.update((id(route), adapter.platform) for route in own)
    routes.extend(pages)
    middleware = [Middleware(RequestMetrics, routes=routes, platforms=platforms)] if metrics else []
    intake = [path for adapter in adapters for path in getattr(adapter, "intake_paths", ())]
    refusals = {
        path: adapter.refusal
        for adapter in adapters
        if hasattr(adapter, "refusal")
        for path in getattr(adapter, "intake_paths", ())
    }
    middleware.append(Middleware(Shedding, paths=intake, full=lambda: hub.full, refusals=refusals))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        middleware=middleware,
    )
    # Starlette's own redirect is to an absolute address built from the Host header, which whoever
    # sends the request chooses, and says http:// behind a proxy that ended TLS: `_without_slash`.
    app.router.redirect_slashes = False
    return app


def _without_slash(routes: Sequence[BaseRoute], request: Request) -> str | None:
    """For a page asked for with a trailing slash (`/dashboard/`), where it is, as a path with no host:
    the browser keeps the scheme and host it used. Only for reads of a route that answers them; a
    platform posting to a wrong address is told 404, which its settings page shows the deployer."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or not path.endswith("/") or not path.rstrip("/"):
        return None
    scope = {**request.scope, "path": path.rstrip("/")}
    if not any(route.matches(scope)[0] is Match.FULL for route in routes):
        return None
    # As it was sent (percent-encoded), since a header holds no other; every route starts `/` and a
    # letter, so this is never `//host` or `/\host`, which a browser would take for another site.
    sent = request.scope.get("raw_path", path.encode()).decode("latin-1")
    if not sent.endswith("/"):
        return None  # an encoded slash (`%2F`): the same address again would be a loop
    sent = sent.rstrip("/")
    query = request.url.query
    return sent + (f"?{query}" if query else "")


async def _stop(part: Service) -> None:
    try:
        await part.stop()
    except Exception:
        log.exception("stopping failed", extra={"part": type(part).__name__})


def _select_one(hub: Hub) -> None:
    with hub.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
