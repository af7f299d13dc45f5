"""`GET /metrics` through the real app: requests by route template and platform, outbox depth, send
failures, scheduler passes, the inbox backlog; and the deployment files (Dockerfile, compose.yaml, the
proxy's config) checked as files, since no image is built in the tests."""

import fnmatch
import re
import threading
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.core.clock import FixedClock
from bot.core.messages import DeliveryError, Reply
from bot.runtime.delivery import Deliverer
from bot.runtime.hub import Hub
from bot.runtime.metrics import OutboxDepth, metrics_route
from bot.runtime.serve import build_server
from bot.runtime.server import build_app
from bot.runtime.settings import Settings
from scheduler.runner import PassRunner
from store.db import make_engine
from tests.conftest import NOW, TestBot, due_message
from tests.test_delivery import Recorder

ROOT = Path(__file__).resolve().parent.parent


class FakeAdapter:
    """A platform with a webhook and a route that names a city in its path."""

    platform = "fake"

    def describe(self) -> str:
        return "fake"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/fake/events", self.events, methods=["POST"]),
            Route("/fake/city/{slug}", self.events, methods=["GET"]),
            Route("/fake/boom", self.boom, methods=["POST"]),
        ]

    async def events(self, _: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def boom(self, _: Request) -> JSONResponse:
        raise RuntimeError("a handler that fails")

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, recipient: str, reply: Reply, *args: Any) -> None: ...


def value(body: str, name: str, **labels: str) -> float:
    """The sample `name` whose labels include `labels`; 0 when there is none yet (a counter not yet
    incremented shows no sample)."""
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def client_of(app: Any) -> httpx.AsyncClient:
    # As a server would: the app's 500 answer is the response, not an exception in the test.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://bot")


async def test_requests_are_counted_per_route_template_and_platform(engine: Engine) -> None:
    app = build_app(Hub(engine, FixedClock(NOW)), [FakeAdapter()])  # type: ignore[list-item]
    async with client_of(app) as client:
        before = await scrape(client)
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.post("/fake/events")).status_code == 200
        assert (await client.get("/fake/city/riverton")).status_code == 200
        assert (await client.get("/no/such/page-7f3a")).status_code == 404
        assert (await client.get("/another/page-9c1e")).status_code == 404
        assert (await client.post("/fake/boom")).status_code == 500
        after = await scrape(client)

    def counted(route: str, platform: str, status: str) -> float:
        labels = {"route": route, "platform": platform, "status": status}
        return value(after, "cda_bot_http_requests_total", **labels) - value(
            before, "cda_bot_http_requests_total", **labels
        )

    assert counted("/healthz", "none", "200") == 2
    assert counted("/healthz", "none", "405") == 1  # a known path, the wrong method
    assert counted("/fake/events", "fake", "200") == 1
    assert counted("/fake/city/{slug}", "fake", "200") == 1
    assert counted("unmatched", "none", "404") == 2
    assert counted("/fake/boom", "fake", "500") == 1  # raised before any response: counted as the 500
    # Neither a city in a path nor a path nobody routes becomes a label.
    for raw in ("riverton", "page-7f3a", "page-9c1e", "/no/such"):
        assert raw not in after
    seconds = "cda_bot_http_request_duration_seconds_count"
    timed = value(after, seconds, route="/fake/events", platform="fake")
    assert timed - value(before, seconds, route="/fake/events", platform="fake") == 1


async def test_metrics_name_no_person_or_city(engine: Engine, testbot: TestBot) -> None:
    testbot.say("console:nobody", "hello")  # an inbox row and a reply in the outbox
    app = build_app(Hub(engine, FixedClock(NOW)), [FakeAdapter()])  # type: ignore[list-item]
    async with client_of(app) as client:
        await client.get("/fake/city/riverton")
        body = await scrape(client)
    ours = [f for f in text_string_to_metric_families(body) if f.name.startswith("cda_bot_")]
    labels = {name for family in ours for sample in family.samples for name in sample.labels}
    assert labels <= {"route", "platform", "status", "state", "outcome", "le"}
    assert "nobody" not in body and "riverton" not in body


async def test_outbox_depth_by_state(engine: Engine) -> None:
    from store.repo import open_store

    states = {"pending": 3, "sending": 1, "failed": 2, "sent": 4, "dropped": 1}
    with open_store(engine) as store:
        for state, count in states.items():
            for n in range(count):
                row = due_message(f"{state}-{n}", "console:ann", NOW)
                row.status = state
                store.enqueue(row)
    app = build_app(Hub(engine, FixedClock(NOW)), [])
    async with client_of(app) as client:
        body = await scrape(client)
    assert value(body, "cda_bot_outbox_depth_ok") == 1
    assert value(body, "cda_bot_outbox_depth", state="pending") == 3
    assert value(body, "cda_bot_outbox_depth", state="sending") == 1
    assert value(body, "cda_bot_outbox_depth", state="failed") == 2
    # History is not depth: counting it would slow every scrape as the bot ages.
    assert 'state="sent"' not in body and 'state="dropped"' not in body


async def test_an_empty_outbox_shows_every_state_at_zero(engine: Engine) -> None:
    app = build_app(Hub(engine, FixedClock(NOW)), [])
    async with client_of(app) as client:
        body = await scrape(client)
    for state in ("pending", "sending", "failed"):
        assert f'cda_bot_outbox_depth{{state="{state}"}} 0.0' in body


async def test_the_scrape_still_answers_when_the_database_does_not(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    app = build_app(Hub(engine, FixedClock(NOW)), [])
    async with client_of(app) as client:
        body = await scrape(client)
    assert value(body, "cda_bot_outbox_depth_ok") == 0
    assert "cda_bot_inbox_backlog" in body and "cda_bot_http_requests_total" in body


async def test_a_slow_count_is_given_up_and_never_piled_up(engine: Engine) -> None:
    release = threading.Event()
    started: list[int] = []

    class Stuck(OutboxDepth):
        def count(self) -> dict[str, int]:
            started.append(1)
            release.wait(30)
            return super().count()

    depth = Stuck(engine, timeout=0.05)
    assert await depth.counts() is None  # the scrape goes on without it
    assert await depth.counts() is None
    assert len(started) == 1  # the second scrape waited for the first count, it did not start another
    release.set()
    # Counted again once the database answers; on a loaded machine a count (a new connection, on
    # PostgreSQL) may itself outlast 0.05 s, so a few scrapes are allowed for it.
    counted = None
    for _scrape in range(40):
        counted = await depth.counts()
        if counted is not None:
            break
    assert counted == {"pending": 0, "sending": 0, "failed": 0}


async def test_backlog_gauges_come_from_the_hub(engine: Engine) -> None:
    from starlette.applications import Starlette

    route = metrics_route(engine, lambda: {"inbox": 7, "outbox_in_flight": 3})
    async with client_of(Starlette(routes=[route])) as client:
        body = await scrape(client)
    assert value(body, "cda_bot_inbox_backlog") == 7
    assert value(body, "cda_bot_outbox_in_flight") == 3


async def test_send_failures_are_counted_per_platform(world: TestBot) -> None:
    app = build_app(Hub(world.engine, world.clock), [])
    name = "cda_bot_send_failures_total"
    async with client_of(app) as client:
        before = await scrape(client)
        failing = Recorder(fail_with=DeliveryError("rate limited", retry_after=90))
        report = await Deliverer(world.engine, {"console": failing}, world.clock).deliver_due()
        assert len(report.retrying) == 6
        world.say("console:a1", "blocker: the vendor went silent")  # three more coach notices
        gone = Recorder(fail_with=DeliveryError("gone", permanent=True))
        report = await Deliverer(world.engine, {"console": gone}, world.clock).deliver_due()
        assert len(report.failed) == 3  # its three coach notices, refused for good
        after = await scrape(client)
    retrying = {"platform": "console", "outcome": "retrying"}
    failed = {"platform": "console", "outcome": "failed"}
    assert value(after, name, **retrying) - value(before, name, **retrying) == 6
    assert value(after, name, **failed) - value(before, name, **failed) == 3


async def test_sends_are_counted_per_platform(world: TestBot) -> None:
    app = build_app(Hub(world.engine, world.clock), [])
    async with client_of(app) as client:
        before = await scrape(client)
        report = await Deliverer(world.engine, {"console": Recorder()}, world.clock).deliver_due()
        after = await scrape(client)
    sent = value(after, "cda_bot_sends_total", platform="console")
    assert len(report.sent) == 6
    assert sent - value(before, "cda_bot_sends_total", platform="console") == 6


async def test_scheduler_pass_duration_is_observed(world: TestBot) -> None:
    app = build_app(Hub(world.engine, world.clock), [])
    name = "cda_bot_scheduler_pass_duration_seconds_count"
    async with client_of(app) as client:
        before = await scrape(client)
        deliverer = Deliverer(world.engine, {"console": Recorder()}, world.clock)
        await PassRunner(world.engine, deliverer, world.clock).run()
        after = await scrape(client)
    assert value(after, name) - value(before, name) == 1


async def test_metrics_can_be_turned_off(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("METRICS_ENABLED", "false")
    server = build_server(Settings(), engine, FixedClock(NOW), scheduler=False)
    assert "metrics: off" in server.status
    async with client_of(server.app) as client:
        assert (await client.get("/metrics")).status_code == 404
    monkeypatch.setenv("METRICS_ENABLED", "")  # blank is unset: on
    server = build_server(Settings(), engine, FixedClock(NOW), scheduler=False)
    async with client_of(server.app) as client:
        assert (await client.get("/metrics")).status_code == 200


def test_metrics_are_served_by_the_running_server(engine: Engine) -> None:
    from tests.slack_harness import serving

    hub = Hub(engine, FixedClock(NOW))
    with serving(build_app(hub, [])) as url:
        httpx.get(f"{url}/readyz")
        body = httpx.get(f"{url}/metrics").text
    assert value(body, "cda_bot_http_requests_total", route="/readyz", status="200") >= 1
    assert value(body, "cda_bot_outbox_depth_ok") == 1


# -- the deployment files ---------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_runs_as_non_root_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    final = instructions[last_from:]
    assert final[0][1].startswith("python:3.11-slim")
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    checks = [arg for op, arg in final if op == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0] and "urllib" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0]  # neither is in the slim image
    installs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert installs and all(re.search(r"pip install \.($|\s)", arg) for arg in installs)  # no [dev]
    entry = dict((op, arg) for op, arg in final if op in {"ENTRYPOINT", "CMD"})
    command = yaml.safe_load(entry["ENTRYPOINT"]) + yaml.safe_load(entry["CMD"])
    assert command == ["cda-bot", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_dockerignore_keeps_secrets_out_and_the_package_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".env", "**/*.db", ".venv", ".git", "tests"} <= set(patterns)

    def excluded(relative: str) -> bool:
        # Docker's rule: a pattern names a path from the top of the context, `**/` any depth, and a
        # directory that matches takes everything in it along.
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        for pattern in patterns:
            if pattern.startswith("**/"):
                if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                    return True
            elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
                return True
        return False

    assert not excluded("README.md") and not excluded("pyproject.toml")  # `pip install .` reads them
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in (name.rstrip("*") for name in packages["find"]["include"]):
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in relative:
                assert not excluded(relative), f"{relative} would be missing from the image"


def test_compose_runs_migrations_then_two_replicas_behind_one_proxy() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    serve = [name for name, service in services.items() if "build" in service and "command" not in service]
    assert sorted(serve) == ["serve-1", "serve-2"]  # the image's command: cda-bot serve
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in serve:
        service = services[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "ports" not in service  # reached through the proxy only
        assert service["env_file"] == ".env"
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
    db = services["db"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount
    proxy = services["proxy"]
    assert len(proxy["ports"]) == 1
    config = [v.split(":")[0] for v in proxy["volumes"] if v.startswith("./deploy/")]
    assert config and (ROOT / config[0]).is_file()


def test_the_proxy_balances_both_replicas_and_does_not_forward_metrics() -> None:
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in caddyfile.splitlines())
    assert re.search(r"reverse_proxy\s+serve-1:8000\s+serve-2:8000", code)
    assert "health_uri /readyz" in code
    blocked = re.search(r"handle\s+/metrics\*\s*\{\s*respond\s+404\s*\}", code)
    assert blocked and code.index(blocked.group(0)) < code.index("reverse_proxy")


def test_readme_section_covers_deploying_upgrading_and_scaling() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Deploying, upgrading and scaling out")
    section = readme[start : readme.index("\n## ", start + 1)]
    for needed in ("docker compose up", ".env", "db upgrade", "/healthz", "/readyz", "/metrics", "SQLite"):
        assert needed in section


def test_mounted_routes_are_named_by_their_templates() -> None:
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from bot.runtime.metrics import route_template

    inner = Route("/city/{slug}/resolve", lambda _: None, methods=["POST"])
    routes: list[BaseRoute] = [
        Route("/healthz", lambda _: None),
        Mount("/dashboard/static", app=StaticFiles(directory=ROOT / "web" / "static")),
        Mount("/dashboard", routes=[inner]),
    ]

    def template(path: str, method: str = "GET") -> str:
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        return route_template(routes, scope)[1]

    assert template("/dashboard/static/site.css") == "/dashboard/static/{path}"
    assert template("/dashboard/city/alpha/resolve", "POST") == "/dashboard/city/{slug}/resolve"
    assert template("/dashboard/nothing-here") == "/dashboard/{path}"  # within the mount, still bounded
    assert template("/elsewhere") == "unmatched"
