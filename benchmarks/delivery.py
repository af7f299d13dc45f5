"""Delivery: what a scheduler pass queued, sent through `cda-bot serve` (its deliverer, the real SDKs)
to local fakes of the platforms, at each platform's own limits.

For each platform the outbox holds messages due at once, as a pass writes them (a reminder to each
city's channel, or to each member's WhatsApp), before the server starts. The fake notes when each one
arrives, under what the platform counts its limit against: a Slack channel, a Teams conversation,
Twilio's sender number. Figures: messages a second from the first arrival to the last; arrivals that
break the platform's published limit (target 0); messages not sent, or sent more than once (target 0).
On Slack, while the reminders go out, members of cities left out of them write `update:` in their
channels, one every quarter second: how long each waited, from its acknowledgement to its reply reaching
the platform.
"""

import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchmarks import inbound
from benchmarks.common import Figure, backends, figure, fresh_database, label
from bot.core.messages import Reply
from store import bulk
from store.models import OutboxStatus
from store.repo import open_store

# As each platform publishes them, per what it counts against: (at most this many, within this many
# seconds). Slack about one message a second per channel; Teams 7 a second, 8 in 2 s and 60 in 30 s per
# conversation; Twilio 80 a second per WhatsApp sender unless raised on request.
Limits = tuple[tuple[int, float], ...]
LIMITS: dict[str, Limits] = {
    "slack": ((1, 1.0),),
    "teams": ((7, 1.0), (8, 2.0), (60, 30.0)),
    "whatsapp": ((80, 1.0),),
}
# Arrivals at the fake are not the sends' own instants: two sends a second apart may arrive a few
# milliseconds closer. A window counts as broken only when it is this much shorter than the limit's.
JITTER = 0.05
# Unprompted, a WhatsApp message to a number silent for a day goes as an approved template.
TEMPLATES = {
    "TWILIO_CONTENT_SIDS": ",".join(f"{lang}:HX{n:032x}" for n, lang in enumerate(("en", "es", "pt")))
}
PER_CONVERSATION = 3  # Slack and Teams: reminders to each channel, so its limit is what spaces them
PROBED = ("slack", "whatsapp")  # where members write updates during the burst
PROBES = 20  # Slack channels or WhatsApp numbers left out of the burst, for the updates sent during it
PROBE_GAP = 0.25  # seconds between two of those updates
# How long each platform takes to answer a message, as over the internet: a send that waited for the one
# before it to be answered would show.
LATENCY_MS = 100
WHATSAPP_MESSAGES = 800  # ten seconds at Twilio's rate: that rate, not the machine, is what shows


@dataclass(frozen=True)
class Scenario:
    platform: str
    title: str  # what was sent, for the table
    recipients: list[tuple[str, int]]  # (recipient, city id), once per message
    references: list[tuple[str, dict[str, Any]]]  # stored before, for platforms that need one


def over_limit(arrivals: Sequence[float], limits: Limits, jitter: float = JITTER) -> int:
    """How many arrivals come within a window the limits forbid: the (count + 1)-th of a run less than
    `span` (less `jitter`) after the first."""
    times = sorted(arrivals)
    return sum(
        1
        for i in range(len(times))
        if any(i >= count and times[i] - times[i - count] < span - jitter for count, span in limits)
    )


def _each_in_a_row(channels: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """PER_CONVERSATION messages to each channel, one after another, as a pass writes a city's: without
    the platform's spacing they would go out together."""
    return [channel for channel in channels for _ in range(PER_CONVERSATION)]


def _reminder_rows(recipients: list[tuple[str, int]], now: datetime) -> list[dict[str, Any]]:
    """Outbox rows as a pass writes a session reminder, one per (recipient, city), all due now."""
    rows = []
    for n, (recipient, city_id) in enumerate(recipients):
        reply = Reply(text=f"Reminder: coaching session tomorrow at 10:00 ({n})", about=[city_id])
        rows.append(
            {
                "key": f"reminder|{recipient}|bench|{n}",
                "recipient": recipient,
                "kind": "reminder",
                "city_id": city_id,
                "payload": reply.model_dump(mode="json"),
                "status": OutboxStatus.pending,
                "attempts": 0,
                "due_at": now,
                "next_attempt_at": now,
                "expires_at": now + timedelta(hours=6),
                "created_at": now,
            }
        )
    return rows


def _queue(engine: Engine, scenario: Scenario) -> None:
    now = datetime.now(UTC)
    rows = _reminder_rows(scenario.recipients, now)
    with open_store(engine) as store:
        store.save_references([(key, scenario.platform, ref) for key, ref in scenario.references], now)
        bulk.insert_ignoring(store, "outbox", list(rows[0]), rows)


def _cities(engine: Engine, place: str) -> list[int]:
    """The ids of the seeded cities whose slugs begin with `place`, in the order they were made."""
    with engine.connect() as db:
        found = db.execute(text("SELECT id FROM cities WHERE slug LIKE :p ORDER BY slug"), {"p": f"{place}%"})
        return [row[0] for row in found]


def _slack(url: str, engine: Engine, _service_url: str) -> Scenario:
    inbound.seed(url)
    ids = _cities(engine, "c")[:-PROBES]  # the last channels are the probes'
    channels = [(f"slack:{inbound.TEAM}:C{n:05d}", city) for n, city in enumerate(ids)]
    return Scenario(
        "slack",
        f"Slack, {len(channels) * PER_CONVERSATION:,} to {len(channels):,} channels",
        _each_in_a_row(channels),
        [],
    )


def _whatsapp(url: str, engine: Engine, _service_url: str) -> Scenario:
    inbound.seed_numbers(url)
    ids = _cities(engine, "w")
    numbers = [(inbound.number(n), ids[n]) for n in range(WHATSAPP_MESSAGES)]
    return Scenario("whatsapp", f"WhatsApp, {len(numbers):,} from one number", numbers, [])


def _teams(url: str, engine: Engine, service_url: str) -> Scenario:
    inbound.seed_teams(url)
    ids = _cities(engine, "t")
    channels = []
    references = []
    for n, city in enumerate(ids):
        channel = inbound.teams_channel(n)
        recipient = f"teams:{inbound.TEAMS_TENANT}:{channel}"
        channels.append((recipient, city))
        # What the adapter keeps when the app is installed in a team's channel.
        references.append(
            (
                recipient,
                {
                    "serviceUrl": service_url,
                    "channelId": "msteams",
                    "bot": inbound.TEAMS_BOT,
                    "conversation": {
                        "id": channel,
                        "conversationType": "channel",
                        "tenantId": inbound.TEAMS_TENANT,
                        "isGroup": True,
                    },
                },
            )
        )
    return Scenario(
        "teams",
        f"Teams, {len(channels) * PER_CONVERSATION:,} to {len(channels):,} channels",
        _each_in_a_row(channels),
        references,
    )


# Each makes its platform's seeded cities and the messages queued for them.
SCENARIOS: dict[str, Callable[[str, Engine, str], Scenario]] = {
    "slack": _slack,
    "whatsapp": _whatsapp,
    "teams": _teams,
}


@contextmanager
def _platform(platform: str, folder: Path) -> Iterator[tuple[dict[str, str], int, str]]:
    """The fakes `platform` needs, running: `serve`'s settings, the port noting arrivals, the service URL
    Teams' references name."""
    if platform == "teams":
        with inbound.teams_platform(folder, LATENCY_MS) as fakes:
            yield fakes.env, fakes.port, fakes.service_url
        return
    port = inbound.free_port()
    env = inbound.slack_env(port) if platform == "slack" else {**inbound.whatsapp_env(port), **TEMPLATES}
    fake = {**env, "BENCH_LATENCY_MS": str(LATENCY_MS)}
    with inbound.process(inbound.uvicorn_args("benchmarks.fake_platforms:app", port), port, fake, folder):
        yield env, port, ""


def _wait_sent(engine: Engine, total: int, seconds: float) -> None:
    """Until the outbox holds nothing unsent, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as db:
            left = db.execute(text("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')"))
            left = left.scalar()
        if not left:
            return
        time.sleep(0.2)
    print(f"  {left:,} of {total:,} still unsent after {seconds:g} s", flush=True)


def run(backend: str, platform: str) -> list[Figure]:
    """One platform on one database: queue, serve, wait, and read what the fake saw."""
    name = label(backend)
    with tempfile.TemporaryDirectory() as folder, fresh_database(backend, Path(folder), "delivery") as engine:
        url = engine.url.render_as_string(hide_password=False)
        with _platform(platform, Path(folder)) as (env, fake_port, service_url):
            scenario = SCENARIOS[platform](url, engine, service_url)
            _queue(engine, scenario)
            total = len(scenario.recipients)
            wanted = _per_key(scenario)
            least = _least_seconds(wanted, LIMITS[platform])
            port = inbound.free_port()
            acknowledged: dict[str, float] = {}
            with inbound.process(inbound.serve_command(url, port), port, env, Path(folder), "/readyz"):
                if platform in PROBED:
                    acknowledged = asyncio.run(_probe(platform, port))
                _wait_sent(engine, total + len(acknowledged), least + 120)
            sends = _arrivals(fake_port, "sends")
            replies = _arrivals(fake_port, "recipients") if platform == "whatsapp" else sends
    waits = [(replies[key][0] - at) * 1000 for key, at in acknowledged.items() if replies.get(key)]
    if platform == "whatsapp":
        # The replies go from the burst's sender and count against its limit with the rest.
        wanted[_fake_key(platform, "")] += len(acknowledged)
    for key in acknowledged:
        sends.pop(key, None)  # a Slack probe's channel is its own: its reply is not the burst's
    arrivals = sorted(at for times in sends.values() for at in times)
    spread = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    broken = sum(over_limit(times, LIMITS[platform]) for times in sends.values())
    astray = sum(abs(len(sends.get(key, [])) - count) for key, count in wanted.items())
    astray += sum(len(times) for key, times in sends.items() if key not in wanted)
    prefix = f"delivery {name}: {scenario.title}"
    probes = []
    if acknowledged:
        probes = [
            figure(f"{prefix}: an update meanwhile, reply p50", statistics.median(waits), "ms"),
            figure(f"{prefix}: an update meanwhile, reply slowest", max(waits), "ms"),
            figure(f"{prefix}: an update meanwhile, no reply", len(acknowledged) - len(waits), "msgs", 0),
        ]
    return [
        figure(f"{prefix}: sent/s", (len(arrivals) - 1) / spread if spread else 0.0, "msg/s"),
        figure(f"{prefix}: first to last sent", spread, "s"),
        figure(f"{prefix}: least the limits allow", least, "s", note="floor"),
        figure(f"{prefix}: over the platform's limit", broken, "msgs", 0),
        figure(f"{prefix}: not sent, or sent twice", astray, "msgs", 0),
        *probes,
    ]


async def _probe(platform: str, port: int) -> dict[str, float]:
    """A member of each city left out of the burst writes `update:`, PROBE_GAP apart, once the burst is
    going out (in a Slack channel, or from a WhatsApp number): when each was acknowledged (monotonic, as
    the fake notes arrivals), by the key its reply arrives under."""
    await asyncio.sleep(0.5)
    connection = await inbound.Connection.open(port)
    acknowledged: dict[str, float] = {}
    first = (inbound.CHANNELS if platform == "slack" else inbound.NUMBERS) - PROBES
    try:
        for n in range(first, first + PROBES):
            if platform == "slack":
                key, (_event, request) = f"slack:C{n:05d}", inbound.signed_request(n, str(int(time.time())))
            else:
                key, (_event, request) = inbound.number(n), inbound.signed_form(n)
            if await connection.send(request) == 200:
                acknowledged[key] = time.monotonic()
            await asyncio.sleep(PROBE_GAP)
    finally:
        connection.close()
    return acknowledged


def _arrivals(fake_port: int, what: str) -> dict[str, list[float]]:
    """What the fake noted: arrivals by limit key (`sends`) or, for Twilio, by recipient (`recipients`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/{what}", timeout=10) as answer:
        found: dict[str, list[float]] = json.loads(answer.read())
    return found


def _fake_key(platform: str, recipient: str) -> str:
    """What the fake notes an arrival under, for a message to `recipient`."""
    if platform == "whatsapp":
        return f"whatsapp:{inbound.WHATSAPP_FROM}"
    return f"{platform}:{recipient.split(':', 2)[2]}"  # the channel or conversation, after the team


def _per_key(scenario: Scenario) -> dict[str, int]:
    """How many messages the fake should note under each key."""
    return Counter(_fake_key(scenario.platform, recipient) for recipient, _city in scenario.recipients)


def _least_seconds(per_key: dict[str, int], limits: Limits) -> float:
    """The shortest time in which the platform's limits let every message go, first to last."""
    most = max(per_key.values())
    return max(((most - 1) // count) * span for count, span in limits)


def bench() -> list[Figure]:
    found: list[Figure] = []
    for backend in backends():
        print(f"Delivery, {label(backend)}", flush=True)
        for platform in ("slack", "whatsapp", "teams"):
            found += run(backend, platform)
    return found


if __name__ == "__main__":
    bench()
