# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""`serve --delivery-process`: replies go out from a child process, which is started again if it dies
and never outlives the server, stopped or killed."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from bot.core.clock import FixedClock
from bot.runtime import delivery_process, intake, metrics, serve, workers
from bot.runtime.delivery_process import DeliveryProcess
from bot.runtime.serve import Server, build_server
from store.db import make_engine
from store.models import Update
from tests.conftest import NOW, TestBot, until
from tests.slack_fixtures import CHANNEL, Running, mock, slack_settings, slack_world  # noqa: F401
from tests.slack_harness import SLACK_ENV, MockSlack, event_body, serving, wait_until


def _message(text: str, ts: str) -> dict[str, str]:
    return {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "UMEMBER1",
        "text": text,
        "ts": ts,
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that ended but was not reaped yet is a zombie: gone for our purpose.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _child(server: Server) -> int:
    deliverer = server.hub.deliverer
    assert isinstance(deliverer, DeliveryProcess)
    wait_until(lambda: deliverer.child_pid is not None, 10, "the delivery process")
    assert deliverer.child_pid is not None
    return deliverer.child_pid


def test_replies_go_out_from_the_child_which_comes_back_when_killed_and_ends_with_the_server(
    slack_world: TestBot, mock: MockSlack
) -> None:
    server = build_server(slack_settings(mock), slack_world.engine, slack_world.clock, delivery_process=True)
    with serving(server.app) as url:
        run = Running(url, server, mock, slack_world)
        sent_before = _sends_at(url)
        first = _child(server)
        assert first != os.getpid() and _alive(first)
        assert (
            run.event(
                event_body(_message("update: mapped 40 bus stops", "1700000000.000100"), "Ev1")
            ).status_code
            == 200
        )
        [post] = mock.wait_for("chat.postMessage", timeout=15)
        assert "recorded for Alpha" in post.params["text"]
        run.settle()
        # Sent by the child, counted at the server's /metrics once the child reports it.
        wait_until(lambda: _sends_at(url) == sent_before + 1, 10, "the child's send in the server's metrics")

        wait_until(lambda: _state(url) == "running", 15, "/readyz to say the child runs")
        exits = _exits_at(url)
        os.kill(first, signal.SIGKILL)  # what it held goes out from the next one; here it held nothing
        wait_until(lambda: _state(url) == "starting", 5, "/readyz to say a child is starting")
        assert httpx.get(f"{url}/readyz").status_code == 200  # still storing what arrives meanwhile
        wait_until(lambda: _child(server) != first, 15, "a new delivery process")
        wait_until(lambda: _state(url) == "running", 15, "/readyz to say the new child runs")
        assert _exits_at(url) == exits + 1
        assert (
            run.event(event_body(_message("update: tested the form", "1700000000.000200"), "Ev2")).status_code
            == 200
        )
        posts = mock.wait_for("chat.postMessage", count=2, timeout=15)
        assert "recorded for Alpha" in posts[1].params["text"]
        run.settle()
        second = _child(server)
    # The server stopped: its delivery process ended with it.
    wait_until(lambda: not _alive(second), 15, "the delivery process to end")
    assert len(mock.named("chat.postMessage")) == 2  # each reply once, whichever process sent it


def test_the_child_handles_what_the_server_stored_even_what_was_handed_to_a_child_that_died(
    slack_world: TestBot, mock: MockSlack
) -> None:
    """The server only stores and acknowledges: with its child paused, a message is acknowledged and
    nothing answers it. Killed while paused, the child is replaced, and the new one handles it: once."""
    server = build_server(slack_settings(mock), slack_world.engine, slack_world.clock, delivery_process=True)
    with serving(server.app) as url:
        run = Running(url, server, mock, slack_world)
        first = _child(server)
        os.kill(first, signal.SIGSTOP)
        try:
            reply = run.event(event_body(_message("update: mapped 40 bus stops", "1700000000.000100"), "Ev1"))
            assert reply.status_code == 200
            time.sleep(2)
            assert _updates(slack_world).count("mapped 40 bus stops") == 0  # the server handled nothing
        finally:
            os.kill(first, signal.SIGKILL)  # what was handed to it is still pending in the inbox
        [post] = mock.wait_for("chat.postMessage", timeout=15)
        assert "recorded for Alpha" in post.params["text"]
        assert _child(server) != first
        run.settle()
    assert len(mock.named("chat.postMessage")) == 1
    assert _updates(slack_world).count("mapped 40 bus stops") == 1


def _updates(bot: TestBot) -> list[str]:
    with bot.store() as store:
        return [u.text for u in store.session.exec(select(Update))]


def test_a_child_that_keeps_dying_at_start_makes_the_server_unready_until_one_lasts(
    slack_world: TestBot, mock: MockSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first three children end at once: /readyz says failing with 503 (a proxy sends new
    messages elsewhere), yet what still arrives is stored. The fourth is the real child: once it has
    lasted, /readyz is 200 again, and the message that arrived meanwhile is answered, once."""
    monkeypatch.setattr(delivery_process, "RESTART_SECONDS", 0.05)
    monkeypatch.setattr(workers, "EARLY_SECONDS", 8.0)
    tries = tmp_path / "tries"
    script = (
        "import os, sys\n"
        f"tries = {str(tries)!r}\n"
        "n = len(open(tries).read()) if os.path.exists(tries) else 0\n"
        "open(tries, 'a').write('x')\n"
        "if n < 3:\n"
        "    sys.exit(1)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'bot.runtime.delivery_process'])\n"
    )
    monkeypatch.setattr(serve, "delivery_command", lambda: [sys.executable, "-c", script])
    server = build_server(slack_settings(mock), slack_world.engine, slack_world.clock, delivery_process=True)
    with serving(server.app) as url:
        run = Running(url, server, mock, slack_world)
        wait_until(lambda: _state(url) == "failing", 15, "/readyz to say the child keeps failing")
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == "delivery process keeps ending"
        sent = run.event(event_body(_message("update: mapped 40 bus stops", "1700000000.000100"), "Ev1"))
        assert sent.status_code == 200  # stored all the same, for whichever child lasts
        [post] = mock.wait_for("chat.postMessage", timeout=15)  # the fourth child handles it
        assert "recorded for Alpha" in post.params["text"]
        assert _state(url) == "failing"  # it has not lasted yet
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 15, "/readyz to be 200 again")
        assert _state(url) == "running"
        run.settle()
    assert len(tries.read_text()) == 4
    assert len(mock.named("chat.postMessage")) == 1


def test_the_pause_before_the_next_child_doubles_once_children_keep_dying_early() -> None:
    pauses = [delivery_process.restart_pause(n) for n in range(9)]
    assert pauses[: workers.EARLY_EXITS] == [delivery_process.RESTART_SECONDS] * 3
    assert pauses[3:7] == [2.0, 4.0, 8.0, 16.0]
    assert pauses[7:] == [delivery_process.RESTART_SECONDS_MAX] * 2


def test_what_waits_in_the_child_counts_against_the_servers_backlog_bound(
    slack_world: TestBot, mock: MockSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound the server refuses (503, so the platform retries) what its child could not
    handle soon; once the child reports that it caught up, the server accepts again."""
    monkeypatch.setattr(intake, "MAX_BACKLOG", 3)  # the server's; the child keeps its own
    server = build_server(slack_settings(mock), slack_world.engine, slack_world.clock, delivery_process=True)
    with serving(server.app) as url:
        run = Running(url, server, mock, slack_world)
        child = _child(server)
        wait_until(lambda: server.hub.intake.backlog == 0, 10, "the child's first report")
        os.kill(child, signal.SIGSTOP)
        try:
            statuses = [
                run.event(
                    event_body(_message(f"update: step {n}", f"1700000000.00010{n}"), f"Ev{n}")
                ).status_code
                for n in range(4)
            ]
        finally:
            os.kill(child, signal.SIGCONT)
        assert statuses == [200, 200, 200, 503]
        mock.wait_for("chat.postMessage", count=3, timeout=15)
        wait_until(lambda: server.hub.intake.backlog == 0, 10, "the child to report it caught up")
        again = run.event(event_body(_message("update: step 3", "1700000000.000103"), "Ev3"))
        assert again.status_code == 200
        mock.wait_for("chat.postMessage", count=4, timeout=15)
        run.settle()


def test_a_killed_server_leaves_no_delivery_process_behind(tmp_path: Path, mock: MockSlack) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SLACK_ENV}
    env.update(
        SLACK_SIGNING_SECRET=slack_settings(mock).slack_signing_secret.get_secret_value(),  # type: ignore[union-attr]
        SLACK_BOT_TOKEN="xoxb-1111-2222-testtoken",
        SLACK_API_BASE_URL=mock.api_url,
    )
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    args = [sys.executable, "-m", "bot.cli", "--db", db, "serve", "--port", str(port), "--delivery-process"]
    server = subprocess.Popen(
        args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _ready(port), 30, "the server")
        wait_until(lambda: bool(_children(server.pid)), 15, "the delivery process")
        [child] = _children(server.pid)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        wait_until(lambda: not _alive(child), 10, "the delivery process to end")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _state(url: str) -> object:
    return httpx.get(f"{url}/readyz").json().get("delivery_process")


def _sends_at(url: str) -> float:
    return _metric_at(url, r'cda_bot_sends_total\{platform="slack"\}')


def _exits_at(url: str) -> float:
    return _metric_at(url, "cda_bot_delivery_process_exits_total")


def _metric_at(url: str, sample: str) -> float:
    body = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{sample} (\S+)$", body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def test_a_child_that_cannot_start_is_tried_again_not_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deliverer = DeliveryProcess(["/nonexistent/python"], {}, make_engine("sqlite://"), {}, FixedClock(NOW))
    deliverer.start()
    try:
        await asyncio.sleep(0.2)
        assert deliverer.running and deliverer.child_pid is None
        assert "delivery process not started" in caplog.text
    finally:
        await deliverer.stop(1)
    assert not deliverer.running


async def test_the_childs_reports_are_added_to_the_servers_counts_and_a_bad_one_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A stand-in child that reports as the real one does, with two lines that are not reports first.
    reports = [
        "not json",
        '{"sends|nowhere|extra": 1}',
        '{"backlog": -1, "read": 0}',
        '{"backlog": 4, "read": 0}',
        '{"sends|slack": 2, "send_failures|slack|retrying": 1}',
    ]
    script = "".join(f"print({line!r}, flush=True)\n" for line in reports) + "import sys\nsys.stdin.read()\n"
    sent = _sends()
    deliverer = DeliveryProcess(
        [sys.executable, "-c", script], {}, make_engine("sqlite://"), {}, FixedClock(NOW)
    )
    assert deliverer.state == "starting"
    deliverer.start()
    try:
        await until(lambda: _sends() == sent + 2)
        assert deliverer.running  # a bad report did not stop the server reading the child
        assert caplog.text.count("delivery process report not understood") == 1
        assert deliverer.backlog == 4  # waiting in the child, by its last report
        assert deliverer.state == "running"  # it reported, so it handles
        deliverer.hand([7, 8])
        assert deliverer.backlog == 6  # and what was handed since, until it says it read them
    finally:
        await deliverer.stop(5)


def _sends() -> float:
    return metrics.REGISTRY.get_sample_value("cda_bot_sends_total", {"platform": "slack"}) or 0.0


async def test_a_child_is_starting_until_it_first_reports_and_again_once_it_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery_process, "RESTART_SECONDS", 60)  # no next child within the test
    # A stand-in child that reports once handed something, and ends once handed something more.
    script = (
        "import sys\n"
        "def handed():\n"
        "    while not sys.stdin.readline().startswith('h'):\n"
        "        pass\n"
        "handed()\n"
        'print(\'{"backlog": 0, "read": 1}\', flush=True)\n'
        "handed()\n"
    )
    deliverer = DeliveryProcess(
        [sys.executable, "-c", script], {}, make_engine("sqlite://"), {}, FixedClock(NOW)
    )
    deliverer.start()
    try:
        await until(lambda: deliverer.child_pid is not None)
        await asyncio.sleep(0.3)
        assert deliverer.state == "starting"  # started, but not yet handling
        deliverer.hand([1])
        await until(lambda: deliverer.state == "running")
        deliverer.hand([2])
        await until(lambda: deliverer.state == "starting")  # it ended: the next one is not handling yet
    finally:
        await deliverer.stop(5)
