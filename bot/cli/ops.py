"""Running the bot: the server, one scheduler pass, the outbox, and database migrations."""

import asyncio
import socket
from typing import Annotated

import typer

from adapters.console.adapter import ConsoleAdapter
from bot import admin
from bot.admin import AdminError
from bot.cli.common import Db, Now, clock_for, database_url, engine_for, err, fail, instant_when, out
from bot.cli.listing import AsJson, Shown, Value, print_rows
from bot.core.clock import SystemClock
from bot.core.messages import Adapter
from bot.runtime.delivery import Deliverer
from bot.runtime.settings import Settings
from scheduler.runner import PassRunner
from store.repo import open_store

reminders_app = typer.Typer(help="What the scheduler planned, sent, dropped or failed.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)

MAX_WORKERS = 64


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8000,
    scheduler: Annotated[
        bool, typer.Option("--scheduler/--no-scheduler", help="Run reminders, nudges and digests here")
    ] = True,
    delivery_process: Annotated[
        bool,
        typer.Option(
            "--delivery-process",
            help="Handle messages and send replies and reminders from a second process (a second core)",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=MAX_WORKERS,
            help="Server processes on the one port, each on a core of its own (the first runs the scheduler)",
        ),
    ] = 1,
    listen_fd: Annotated[int | None, typer.Option("--listen-fd", hidden=True)] = None,
    worker: Annotated[int, typer.Option("--worker", hidden=True)] = 0,
    db: Db = None,
) -> None:
    """The HTTP server with every adapter whose credentials are set, and the scheduler."""
    from bot.runtime import serve as serving  # the server's dependencies load only for this command

    settings = Settings()
    if workers > 1:
        if delivery_process:
            raise fail("--workers and --delivery-process: choose one (each worker already has a core)")
        _serve_workers(settings, host, port, scheduler, workers, db)
        return
    try:
        server = serving.build_server(settings, engine_for(db), SystemClock(), scheduler, delivery_process)
    except serving.ConfigError as error:
        raise fail(str(error)) from None
    say = (lambda line: err.print(line, markup=False)) if worker == 0 else (lambda line: None)
    sock = None if listen_fd is None else socket.socket(fileno=listen_fd)
    serving.run(server, host, port, serving.secrets_of(settings), say, sock)


def _serve_workers(
    settings: Settings, host: str, port: int, scheduler: bool, count: int, db: str | None
) -> None:
    """The port bound here, once (a socket for each worker), and `count` workers serving on it until
    stopped."""
    from bot.runtime import logs, workers
    from bot.runtime import serve as serving

    try:
        serving.platform_configs(settings)  # a half-set adapter is one error here, not one per worker
    except serving.ConfigError as error:
        raise fail(str(error)) from None
    engine_for(db).dispose()  # migrated here, before the workers, which would all try at once
    try:
        sockets = workers.listening_sockets(host, port, count)
    except OSError as error:
        raise fail(f"cannot listen on {host}:{port}: {error.strerror}") from None
    logs.configure(serving.secrets_of(settings))
    err.print(f"workers: {count} processes on {host}:{port}", markup=False)
    status = workers.supervise(
        count,
        sockets,
        lambda index, fd: workers.worker_command(index, fd, scheduler),
        {"DATABASE_URL": database_url(db)},  # not on the command line, where `ps` shows it
        serving.GRACEFUL_SHUTDOWN_SECONDS + 5,
    )
    if status:
        raise typer.Exit(status)


def tick(now: Now = None, db: Db = None) -> None:
    """Run one scheduler pass: plan what is due, send it (console deliveries print)."""
    from bot.runtime import serve as serving

    clock = clock_for(now)
    settings = Settings()
    engine = engine_for(db)
    try:
        server = serving.build_server(settings, engine, clock, scheduler=False)
    except serving.ConfigError as error:
        raise fail(str(error)) from None
    adapters: dict[str, Adapter] = {"console": ConsoleAdapter(print)}
    adapters.update({adapter.platform: adapter for adapter in server.adapters})
    report = asyncio.run(PassRunner(engine, Deliverer(engine, adapters, clock), clock).run())
    delivery = report.delivery
    out.print(
        f"planned {len(report.plan.planned)}, sent {len(delivery.sent)}, retrying {len(delivery.retrying)}, "
        f"failed {len(delivery.failed)}, dropped {len(report.plan.dropped) + len(delivery.dropped)}"
        f" (adapters here: {', '.join(adapters)})"
    )


@reminders_app.command("list")
def reminders_list(
    city: Annotated[str | None, typer.Option("--city")] = None,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """Show outbox messages: reminders, nudges, digests and notices, planned, sent, dropped or failed.

    Columns (tab-separated when piped): id, city, due (in the city's time, else UTC), kind, to, status,
    tries, delivery (what the platform reported after the send: delivered, read, failed, with its error
    code), error. With --json, `due` is ISO-8601 in UTC."""
    engine = engine_for(db)
    rows: list[list[Value]] = []
    with open_store(engine) as store:
        cities = {c.id: c for c in store.cities()}
        ids = None
        if city is not None:
            try:
                ids = [admin.city_of(store, city).id]
            except AdminError as error:
                raise fail(str(error)) from None
        for row in store.outbox(ids):  # type: ignore[arg-type]
            where = cities.get(row.city_id)
            rows.append(
                [
                    row.id,
                    where.slug if where else None,
                    Shown(instant_when(row.due_at, where.zone if where else "UTC"), row.due_at.isoformat()),
                    row.kind,
                    row.recipient,
                    row.status,
                    row.attempts,
                    f"{row.delivery} {row.delivery_code}" if row.delivery_code else row.delivery,
                    row.last_error,
                ]
            )
    columns = ["id", "city", "due", "kind", "to", "status", "tries", "delivery", "error"]
    print_rows(columns, rows, as_json)


@db_app.command("upgrade")
def db_upgrade(db: Db = None) -> None:
    """Apply the database migrations."""
    engine_for(db)
    out.print("database is up to date")
