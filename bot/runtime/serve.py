"""`cda-bot serve`: the adapters whose credentials are set, checked before the port is bound."""

import contextlib
import functools
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from uvicorn.main import STARTUP_FAILURE

from adapters.slack.config import SlackConfig, SlackConfigError, slack_config
from adapters.teams.config import TeamsConfig, TeamsConfigError, teams_config
from adapters.whatsapp.config import WhatsAppConfig, WhatsAppConfigError, whatsapp_config
from bot.core.clock import Clock
from bot.runtime import heap, logs
from bot.runtime.delivery import Deliverer
from bot.runtime.delivery_process import DeliveryProcess
from bot.runtime.delivery_process import command as delivery_command
from bot.runtime.header_deadline import HeadersInTime
from bot.runtime.hub import DelivererType, Hub
from bot.runtime.server import PlatformAdapter, build_app
from bot.runtime.settings import Settings
from scheduler.runner import PassRunner
from scheduler.service import PASS_SECONDS, SchedulerService
from web.routes import dashboard_routes
from web.signin import WebConfig

log = logging.getLogger("cda_bot.serve")

GRACEFUL_SHUTDOWN_SECONDS = 25


class ConfigError(ValueError):
    """A half-configured adapter: one line, printed before anything starts."""


@dataclass
class Server:
    app: Starlette
    hub: Hub
    adapters: list[PlatformAdapter]
    status: list[str]  # one line per platform: on (how) or off (why)


def secrets_of(settings: Settings) -> list[str]:
    return [
        value.get_secret_value()
        for value in vars(settings).values()
        if value is not None and hasattr(value, "get_secret_value")
    ]


def build_server(
    settings: Settings, engine: Engine, clock: Clock, scheduler: bool = True, delivery_process: bool = False
) -> Server:
    """`delivery_process`: what this process stores is handled, and replies and unprompted messages
    are sent, from a child process."""
    deliverer: DelivererType = Deliverer
    if delivery_process:
        database = engine.url.render_as_string(hide_password=False)
        env = {**os.environ, **settings.as_environment(), "DATABASE_URL": database}
        deliverer = functools.partial(DeliveryProcess, delivery_command(), env)
    hub = Hub(engine, clock, deliverer)
    adapters, status = platform_adapters(settings, hub)
    if delivery_process:
        status.append("handling and sending: from a process of its own")
    services = []
    if scheduler:
        services.append(SchedulerService(PassRunner(engine, hub.deliverer, clock)))
        status.append(f"scheduler: on (a pass every {PASS_SECONDS} s)")
    else:
        status.append("scheduler: off (run `cda-bot tick` from cron)")
    web = WebConfig.from_settings(settings)
    status.append(f"coaches' page: on ({web.base_url}/dashboard, sign in with `/cda dashboard`)")
    pages = dashboard_routes(engine, clock, web, hub.deliverer.wake)
    metrics = settings.metrics_enabled is not False
    status.append("metrics: on (GET /metrics, not for the public)" if metrics else "metrics: off")
    app = build_app(hub, adapters, services, pages=pages, metrics=metrics)
    return Server(app, hub, adapters, status)


def platform_configs(
    settings: Settings,
) -> tuple[SlackConfig | None, TeamsConfig | None, WhatsAppConfig | None]:
    """Each platform's configuration, None where its credentials are absent; ConfigError for one that
    is half set."""
    try:
        return slack_config(settings), teams_config(settings), whatsapp_config(settings)
    except (SlackConfigError, TeamsConfigError, WhatsAppConfigError) as error:
        raise ConfigError(str(error)) from None


def platform_adapters(settings: Settings, hub: Hub) -> tuple[list[PlatformAdapter], list[str]]:
    """An adapter for each platform whose credentials are set, and a line per platform: on or off."""
    adapters: list[PlatformAdapter] = []
    status: list[str] = []
    slack, teams, whatsapp = platform_configs(settings)
    if slack is None:
        status.append("slack: off (no credentials)")
    else:
        # Each platform's SDK is imported only when it is on: Teams' alone weighs 30 MB.
        from adapters.slack.adapter import SlackAdapter

        adapters.append(SlackAdapter(slack, hub))
        status.append(slack.describe())
    if teams is None:
        status.append("teams: off (no credentials)")
    else:
        from adapters.teams.adapter import TeamsAdapter

        adapters.append(TeamsAdapter(teams, hub))
        status.append(teams.describe())
    if whatsapp is None:
        status.append("whatsapp: off (no credentials)")
    else:
        from adapters.whatsapp.adapter import WhatsAppAdapter

        adapters.append(WhatsAppAdapter(whatsapp, hub))
        status.append(whatsapp.describe())
    return adapters, status


def uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
        proxy_headers=True,
        # A line per request costs more than the request (platforms send thousands a minute): requests
        # are counted at /metrics, and refusals and failures are logged where they happen.
        access_log=False,
        # asyncio's own loop, not uvloop: libuv accepts one connection per turn of the loop, so under
        # load, new connections waited seconds in the kernel's queue, where the shedding cannot see them,
        # and were answered after the platform's deadline (by hand, PostgreSQL at twice capacity: 1,311
        # of 3,525 new connections waited over a second to be accepted; none with asyncio's, which
        # accepts every waiting connection at once). Throughput was the same within the runs' spread.
        loop="asyncio",
        http=HeadersInTime,
    )


def run(
    server: Server,
    host: str,
    port: int,
    secrets: list[str],
    say: Callable[[str], None],
    sock: socket.socket | None = None,
) -> None:
    """Serve on `host`:`port`, or on `sock`, the listening socket `serve --workers` made for this one."""
    logs.configure(secrets)
    for line in server.status:
        say(line)
    log.info("listening", extra={"host": host, "port": port} if sock is None else {"fd": sock.fileno()})
    heap.keep_what_is_loaded()
    running = uvicorn.Server(uvicorn_config(server.app, host, port))
    with contextlib.suppress(KeyboardInterrupt):
        running.run(sockets=None if sock is None else [sock])
    if not running.started:
        sys.exit(STARTUP_FAILURE)  # the port taken, the lifespan failed: said in the log above
