# ruff: noqa: F811  (the fixtures are imported from tests.slack_fixtures, then requested by name)
"""`cda-bot serve --workers N` as a process, as a deployer runs it: signed Slack events through the
one port answered once each by whichever worker took them, their metrics added up at /metrics, a
worker killed and started again with nothing acknowledged lost, SIGTERM stopping them all, and
refusals before the port is bound."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.cli import app
from bot.runtime import workers
from store.models import OutboxMessage, OutboxStatus
from tests.conftest import TestBot
from tests.listen_queue import listen_queue
from tests.slack_fixtures import CHANNEL, mock, slack_world  # noqa: F401
from tests.slack_harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SLACK_ENV,
    MockSlack,
    event_body,
    signature_headers,
    wait_until,
)

WORKERS = 2
# Every reply goes to one channel, which each worker's deliverer sends to at Slack's pace (about one
# message a second): a few events, and time for them.
EVENTS = 16
ANSWERED_WITHIN = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    tmp: Path  # the parent's TMPDIR: where it keeps the workers' metrics

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]


@pytest.fixture
def served(slack_world: TestBot, mock: MockSlack, db_url: str, tmp_path: Path) -> Iterator[Served]:
    port = _free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in SLACK_ENV and k != "DATABASE_URL"}
    env.update(
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_BASE_URL=mock.api_url,
        TMPDIR=str(tmp),
    )
    command = ["serve", "--db", db_url, "--port", str(port), "--workers", str(WORKERS)]
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *command],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    running = Served(f"http://127.0.0.1:{port}", process, tmp)

    def up() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            ready = httpx.get(f"{running.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False
        return ready and len(running.workers()) == WORKERS

    try:
        wait_until(up, 30, "cda-bot serve --workers")
        yield running
    finally:
        if process.poll() is None:
            process.kill()  # its workers get SIGTERM as it dies (PR_SET_PDEATHSIG)
        process.wait(10)


def _event(n: int) -> tuple[str, bytes]:
    event = {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "UMEMBER1",
        "text": f"update: from worker test {n}",
        "ts": f"{n}.5",
    }
    return f"{n}.5", json.dumps(event_body(event, f"EvWORKERS{n}")).encode()


def _send_until_acknowledged(url: str, body: bytes, seconds: float = 30) -> None:
    """As Slack does: the same event again, signed anew, until it is answered 200."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            headers = {"Content-Type": "application/json", **signature_headers(body)}
            if httpx.post(f"{url}/slack/events", content=body, headers=headers, timeout=3).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "never acknowledged"
        time.sleep(0.1)


def _send_all(url: str, numbers: range) -> list[str]:
    events = [_event(n) for n in numbers]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda event: _send_until_acknowledged(url, event[1]), events))
    return [ts for ts, _ in events]


def _answered(mock: MockSlack) -> list[str]:
    """The events answered (on the real clock the scheduler may also post a reminder or a digest)."""
    return [call.params["thread_ts"] for call in mock.replies(CHANNEL)]


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_workers_answer_each_event_once_add_up_their_metrics_and_stop_on_sigterm(
    served: Served, mock: MockSlack
) -> None:
    sent = _send_all(served.url, range(1, EVENTS + 1))
    wait_until(lambda: len(_answered(mock)) >= len(sent), ANSWERED_WITHIN, "every event answered")
    time.sleep(0.5)  # time for a second answer to any, were one coming
    assert sorted(_answered(mock)) == sorted(sent)
    # Requests until both workers have taken some (each counts in a file of its own) …
    (folder,) = served.tmp.glob("cda-bot-metrics-*")

    def counting() -> set[str]:
        return {re.sub(r"\D", "", f.name) for f in folder.glob("counter_*.db")}

    checks = 0
    with ThreadPoolExecutor(16) as pool:
        while not counting() >= {str(pid) for pid in served.workers()}:
            assert checks < 4000, f"one worker took every connection: {counting()}"
            statuses = list(pool.map(lambda _: httpx.get(f"{served.url}/healthz").status_code, range(64)))
            assert statuses == [200] * 64
            checks += 64
    # … and whichever is scraped counts them all.
    scraped = httpx.get(f"{served.url}/metrics").text
    events = {"route": "/slack/events", "platform": "slack", "status": "200"}
    assert _metric(scraped, "cda_bot_http_requests_total", **events) == len(sent)
    health = {"route": "/healthz", "platform": "none", "status": "200"}
    assert _metric(scraped, "cda_bot_http_requests_total", **health) == checks
    assert "process_resident_memory_bytes" not in scraped  # one worker's: left out
    # Each worker's backlog, published to its files and added up: nothing left to handle.
    assert re.search(r"^cda_bot_inbox_backlog 0\.0$", scraped, re.MULTILINE), scraped
    pids = served.workers()
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(40) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not folder.exists()
    log = served.process.stderr.read() if served.process.stderr else ""
    assert f"workers: {WORKERS} processes on 127.0.0.1:" in log
    assert log.count("scheduler: on") == 1 and log.count("slack: on") == 1  # said by the first worker
    structured = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [e["message"] for e in structured if e["logger"] == "cda_bot.server"].count("server stopped") == 2
    assert BOT_TOKEN not in log and SIGNING_SECRET not in log


def test_a_worker_killed_is_started_again_and_nothing_it_acknowledged_is_lost(
    served: Served, mock: MockSlack, slack_world: TestBot
) -> None:
    first = _send_all(served.url, range(1, EVENTS // 2 + 1))
    victim = served.workers()[1]
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)  # bytes the dead worker had written still reach the mock
    # The crash window for a repeat (README): a post Slack had when the worker died, not yet recorded.
    posted = set(_answered(mock))
    with slack_world.store() as store:
        sending = store.session.exec(
            select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.sending)
        )
        in_flight = {str((row.context or {}).get("thread_ts")) for row in sending} & posted
    wait_until(
        lambda: len(served.workers()) == WORKERS and victim not in served.workers(), 15, "a new worker"
    )
    later = _send_all(served.url, range(EVENTS // 2 + 1, EVENTS + 1))
    # A reply the killed worker had claimed goes out once its lease (30 s) runs out.
    wait_until(
        lambda: set(_answered(mock)) >= set(first + later), 30 + ANSWERED_WITHIN, "every event answered"
    )
    time.sleep(0.5)
    repeated = {ts for ts, count in Counter(_answered(mock)).items() if count > 1}
    assert repeated <= in_flight, (repeated, in_flight)
    assert set(_answered(mock)) == set(first + later)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(40) == 0  # it ran on, and stopped when told
    log = served.process.stderr.read() if served.process.stderr else ""
    (exited,) = [json.loads(line) for line in log.splitlines() if '"worker exited"' in line]
    assert (exited["worker"], exited["code"]) == (1, -signal.SIGKILL)


def test_serve_with_workers_refuses_before_binding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in SLACK_ENV:
        monkeypatch.delenv(name, raising=False)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    both = CliRunner().invoke(app, ["serve", "--db", db, "--workers", "2", "--delivery-process"])
    assert both.exit_code == 1 and "choose one" in both.stderr
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)  # and no signing secret: half set
    half = CliRunner().invoke(app, ["serve", "--db", db, "--workers", "2", "--port", "1"])
    assert half.exit_code == 1 and "SLACK_SIGNING_SECRET" in half.stderr
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(app, ["serve", "--db", db, "--workers", "2", "--port", str(port)])
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    zero = CliRunner().invoke(app, ["serve", "--db", db, "--workers", "0"])
    assert zero.exit_code == 2


def test_a_worker_that_keeps_exiting_at_start_stops_the_server_with_status_1(tmp_path: Path) -> None:
    """A database that refuses every worker, say: starting them again for ever would only fill the log."""
    started = tmp_path / "started"

    def command(index: int, fd: int) -> list[str]:
        return [sys.executable, "-c", f"open({str(started)!r}, 'a').write('{index}\\n'); raise SystemExit(3)"]

    sockets = workers.listening_sockets("127.0.0.1", 0, 2)
    began = time.monotonic()
    assert workers.supervise(2, sockets, command, {}, stop_seconds=5) == 1
    assert time.monotonic() - began < workers.EARLY_SECONDS
    # Each worker started, then started again until one had exited early EARLY_EXITS times.
    starts = Counter(started.read_text().split())
    assert max(starts.values()) == workers.EARLY_EXITS
    assert set(starts) == {"0", "1"}
    assert all(sock.fileno() == -1 for sock in sockets)  # closed: the port is free again


@pytest.mark.skipif(sys.platform != "linux", reason="Linux spreads connections over SO_REUSEPORT sockets")
def test_each_worker_has_a_socket_of_its_own_and_new_connections_are_spread_over_them() -> None:
    """A worker takes every connection waiting on its socket at once: on one shared socket, whichever
    woke first took most of a burst (53 of 64 in one try) and kept them."""
    sockets = workers.listening_sockets("127.0.0.1", 0, 2)
    port = sockets[0].getsockname()[1]
    try:
        assert [sock.getsockname()[1] for sock in sockets] == [port, port]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        waiting = [listen_queue(sock) for sock in sockets]
        for client in clients:
            client.close()
        # Spread by a hash of each connection's addresses: fewer than 16 of 64 on one is about 1 in 30,000.
        assert sum(waiting) == 64 and min(waiting) >= 16, waiting
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT as Linux has it")
def test_workers_do_not_share_a_port_with_another_server_that_could() -> None:
    """Another server listening with SO_REUSEPORT (a second `serve --workers` by mistake) would take
    half the connections: the port counts as in use."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            workers.listening_sockets("127.0.0.1", other.getsockname()[1], 2)
