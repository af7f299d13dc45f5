# ruff: noqa: F811  (the Slack fixtures are imported from tests.slack_fixtures, then requested by name)
"""Cities see only their own data: every command × conversation × speaker, read back from the outbox rows
the dispatcher writes for each message; then a few of the same cells end to end through the Slack server.

The promise: a reply is posted in a conversation only if everyone there may see all of it (a channel bound
to a city sees that city's data only; an unbound shared channel sees no city's data); anything else goes to
the person who asked, with a short public line saying so."""

import contextlib
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot import admin
from bot.core.audience import SENT_PRIVATELY
from bot.core.clock import FixedClock
from bot.core.i18n import translator
from bot.core.inbox import REPLY_KIND, Dispatcher
from bot.core.messages import InboundMessage
from store.db import make_engine, upgrade
from store.models import OutboxMessage
from store.repo import Store
from tests.conftest import NOW, PG_URL, TestBot, populate_world, scratch_postgres_database
from tests.slack_fixtures import CHANNEL, Running, mock, running, slack_world  # noqa: F401
from tests.slack_harness import BOT_USER, TEAM, Call, event_body

CITIES = ("alpha", "beta", "gamma")  # slugs; each city's name, markers and session titles contain it
ALPHA_CHANNEL = f"slack:{TEAM}:{CHANNEL}"  # bound to alpha in the world
UNBOUND_CHANNEL = f"slack:{TEAM}:C0UNBOUND"
NOTE = translator("en").gettext(SENT_PRIVATELY)  # every speaker here hears English


# -- the axes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    key: str
    user: str  # the Slack user id; no city's name in it, so it never looks like a leak in a CSV
    city: str | None = None  # a member's city
    coached: frozenset[str] = field(default_factory=frozenset)  # a coach's cities
    resolves: str = ""  # whose blocker `resolve` is tried on: the city that makes the cell interesting

    @property
    def identity(self) -> str:
        return f"slack:{TEAM}:{self.user}"

    @property
    def may_see(self) -> frozenset[str]:
        return frozenset({self.city}) if self.city else self.coached


SPEAKERS = [
    Speaker("alpha_member", "UMX1", city="alpha", resolves="alpha"),
    # On the roster as Beta's: speaking in Alpha's channel does not make them Alpha's member.
    Speaker("beta_member", "UMX2", city="beta", resolves="beta"),
    Speaker("coach_ab", "UMXCOACH1", coached=frozenset({"alpha", "beta"}), resolves="beta"),
    Speaker("coach_all", "UMXCOACH2", coached=frozenset(CITIES), resolves="gamma"),
]


@dataclass(frozen=True)
class Conversation:
    key: str
    identity: str | None  # None: the DM, whose conversation is the sender's own identity
    city: str | None  # the city whose data everyone there may see (a slash command: its channel's)
    slash: bool = False  # `/cda …` typed in the channel: only the sender sees it or its answer

    @property
    def shared(self) -> bool:
        return self.identity is not None and not self.slash


CONVERSATIONS = [
    Conversation("dm", None, None),
    Conversation("alpha_channel", ALPHA_CHANNEL, "alpha"),
    Conversation("unbound_channel", UNBOUND_CHANNEL, None),
    Conversation("slash_in_alpha_channel", ALPHA_CHANNEL, "alpha", slash=True),
]


@dataclass(frozen=True)
class Command:
    key: str
    text: str
    # post: a member's write · resolve · default: the speaker's city, else the channel's, else all coached ·
    # beta: names Beta · coach: a coach command · own: a member's own city (the help title), else none ·
    # none: no city at all
    kind: str
    names: bool  # the answer names every city it shows (a positive check the cell can fail)


COMMANDS = [
    Command("update", "update: matrix cell progress", "post", True),
    Command("blocker", "blocker: matrix cell obstacle", "post", True),
    Command("resolve", "/cda resolve {id}", "resolve", False),  # "Blocker #7 resolved." names no city
    Command("next", "/cda next", "default", True),
    Command("question", "when is our next session?", "default", True),
    Command("blockers", "/cda blockers", "default", True),
    Command("blockers_beta", "/cda blockers beta", "beta", True),
    Command("updates", "/cda updates", "default", True),
    Command("updates_beta", "/cda updates beta", "beta", True),
    Command("status", "/cda status", "default", True),
    Command("status_beta", "/cda status beta", "beta", True),
    Command("quiet", "/cda quiet", "coach", False),  # nobody is quiet on the fixed day: no names
    Command("digest", "/cda digest", "coach", True),
    Command("export_updates", "/cda export updates", "coach", True),
    Command("export_blockers", "/cda export blockers", "coach", True),
    Command("help", "/cda help", "own", False),
    Command("unknown", "the weather is lovely today", "none", False),
]


def shows(command: Command, speaker: Speaker, conversation: Conversation) -> frozenset[str]:
    """The cities whose data the answer shows, as the contract reads: this decides public or private."""
    if command.kind == "none" or (command.kind == "own" and speaker.city is None):
        return frozenset()
    if speaker.city is not None:
        # A member's answers, refusals included ("You can only see your own city's data (Alpha)"),
        # are about their own city, wherever they ask.
        return frozenset({speaker.city})
    if command.kind == "post":
        return frozenset()  # a coach is told that members post: nothing of any city
    if command.kind == "resolve":
        return frozenset({speaker.resolves})
    if command.kind == "beta":
        return frozenset({"beta"})
    if command.kind == "default" and conversation.city in speaker.coached:
        return frozenset({conversation.city})  # a coach in a city's channel sees that city by default
    return speaker.coached


def names_what_it_shows(command: Command, speaker: Speaker) -> bool:
    # A member refused a coach command is told so without any city's name.
    return command.names and not (speaker.city is not None and command.kind == "coach")


def _cells() -> list[object]:
    cells = []
    for command in COMMANDS:
        for conversation in CONVERSATIONS:
            for speaker in SPEAKERS:
                cell = (command.key, conversation.key, speaker.key)
                cells.append(pytest.param(command, conversation, speaker, id="-".join(cell)))
    return cells


# -- the world, once per backend ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def matrix_bot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[TestBot]:
    """conftest's `world` plus the four Slack speakers, built once per backend: a fresh world per cell
    would cost ~80 ms × 272 cells, and no cell changes what another one checks (see `resolve`). On
    PostgreSQL it is a scratch database of its own, so the Slack tests' per-test TRUNCATE of the shared
    one cannot reach it."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("audience") / "cda-bot.db"
            shutil.copy(sqlite_template, path)
            url = f"sqlite:///{path}"
        else:
            if not PG_URL:
                pytest.skip("TEST_DATABASE_URL is not set")
            url = stack.enter_context(scratch_postgres_database())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        upgrade(engine)
        bot = TestBot(engine, FixedClock(NOW))
        populate_world(bot, also=_add_speakers)
        yield bot


def _add_speakers(store: Store, now: datetime) -> None:
    # Names without a city's name in them, so that a name in a listing is never mistaken for a leak.
    for speaker, name in zip(SPEAKERS, ("Mia", "Noor", "Cora", "Dev"), strict=True):
        if speaker.city is not None:
            admin.add_member(store, speaker.identity, speaker.city, now, name)
        else:
            coached = [] if speaker.coached == frozenset(CITIES) else sorted(speaker.coached)
            admin.add_coach(store, speaker.identity, coached, now, name)


# -- one cell -------------------------------------------------------------------------------------------


def _message(bot: TestBot, speaker: Speaker, conversation: Conversation, text: str) -> InboundMessage:
    """The message as the Slack adapter would hand it over (see adapters/slack/parse.py)."""
    now = bot.clock.now()
    ts = f"{now.timestamp():.6f}"
    common = {
        "platform": "slack",
        "message_id": uuid.uuid4().hex,
        "sender": speaker.identity,
        "text": text,
        "received_at": now,
        "addressed": True,  # a DM, a mention or a slash command: said to the bot
    }
    if conversation.identity is None:
        context = {"channel": speaker.user, "thread_ts": None, "message_ts": ts}
        return InboundMessage(
            conversation=speaker.identity, reply_context=context, direct=True, private=True, **common
        )
    channel = conversation.identity.rsplit(":", 1)[1]
    if conversation.slash:
        context = {"channel": channel, "user": speaker.user, "response_url": "https://hooks.test/r/1"}
        return InboundMessage(
            conversation=conversation.identity,
            reply_context=context,
            reply_expires_at=now + timedelta(minutes=30),
            private=True,
            **common,
        )
    context = {"channel": channel, "thread_ts": ts, "message_ts": ts}
    return InboundMessage(conversation=conversation.identity, reply_context=context, **common)


def _reply_rows(bot: TestBot, message: InboundMessage) -> list[OutboxMessage]:
    prefix = f"{REPLY_KIND}|{message.platform}|{message.message_id}|"
    with bot.store() as store:
        rows = store.session.exec(
            select(OutboxMessage).where(col(OutboxMessage.key).startswith(prefix)).order_by(OutboxMessage.id)
        ).all()
        store.session.expunge_all()
        return list(rows)


def _shown(row: OutboxMessage) -> str:
    """Everything a person could read in the row (text, title, items, fields, a CSV), for a search."""
    return json.dumps(row.payload, ensure_ascii=False).lower()


def _named(row: OutboxMessage) -> set[str]:
    text = _shown(row)
    return {city for city in CITIES if city in text}


def _city_ids(bot: TestBot) -> dict[str, int]:
    with bot.store() as store:
        return {c.slug: c.id for c in store.cities() if c.id is not None}


def _open_blocker_to_resolve(bot: TestBot, city: str) -> int:
    # A fresh blocker per `resolve` cell: the world's own blockers stay open for the listing cells,
    # whatever order the cells run in.
    member = {"alpha": "console:a1", "beta": "console:b1", "gamma": "console:g1"}[city]
    found = re.search(r"#(\d+)", bot.say(member, "blocker: matrix resolve target"))
    assert found is not None
    return int(found.group(1))


@pytest.mark.parametrize(("command", "conversation", "speaker"), _cells())
def test_a_reply_is_public_only_where_everyone_may_see_it(
    matrix_bot: TestBot, command: Command, conversation: Conversation, speaker: Speaker
) -> None:
    bot = matrix_bot
    text = command.text
    if command.kind == "resolve":
        text = text.format(id=_open_blocker_to_resolve(bot, speaker.resolves))
    message = _message(bot, speaker, conversation, text)
    Dispatcher(bot.engine, bot.clock).handle(message)
    rows = _reply_rows(bot, message)
    expected = shows(command, speaker, conversation)
    ids = _city_ids(bot)

    assert rows, "whatever is said to the bot gets an answer"
    assert {r.recipient for r in rows} <= {message.conversation, message.sender}, "nobody else is written to"
    # What the sender gets privately is still only what they may see.
    for row in rows:
        if row.recipient == message.sender:
            assert _named(row) <= speaker.may_see, row.payload

    if conversation.shared:
        visible = {conversation.city} if conversation.city else set()
        public = [r for r in rows if r.recipient == message.conversation]
        diverted = [r for r in rows if r.recipient == message.sender]
        for row in public:
            # The negative side: nothing of another city (for an unbound channel, of any city) is posted,
            # neither in what people read nor in the audience the row records.
            assert not (_named(row) - visible), f"posted in {conversation.key}: {row.payload}"
            assert set(row.payload["about"]) <= {ids[c] for c in visible}, row.payload
            assert row.context == message.reply_context, "a public answer goes in the message's thread"
        if expected <= visible:
            # The positive side: what everyone there may see is answered there, not whispered.
            assert diverted == [], f"{[r.payload['text'] for r in diverted]} could have been public"
            assert all(r.payload["text"] != NOTE for r in public)
        else:
            assert diverted, "an answer showing another city's data must not be posted here"
            # The adapter posts a row with the channel's context into the channel: a private one has none.
            assert all((r.context or {}).get("channel") != message.reply_context["channel"] for r in diverted)
            assert [r.payload["text"] for r in public] == [NOTE], "one public line says where it went"
    else:
        # A DM, or a slash command only its typist saw: every answer is theirs, where they asked.
        assert {r.recipient for r in rows} == {message.sender}
        assert all(r.context == message.reply_context for r in rows)
        assert all(r.payload["text"] != NOTE for r in rows)

    answer = [r for r in rows if r.payload["text"] != NOTE]
    assert {i for r in answer for i in r.payload["about"]} == {ids[c] for c in expected}
    if names_what_it_shows(command, speaker):
        named = set().union(*(_named(r) for r in answer))
        assert expected <= named, f"expected {sorted(expected)} in {[r.payload['text'] for r in answer]}"


# A few cells spelled out, so that the oracle above cannot drift into agreeing with a wrong product.
@pytest.mark.parametrize(
    ("speaker_key", "conversation_key", "text", "private", "public"),
    [
        ("coach_ab", "alpha_channel", "/cda status beta", "Status — Beta", NOTE),
        ("coach_ab", "alpha_channel", "/cda status", None, "Status — Alpha"),
        ("alpha_member", "alpha_channel", "update: matrix spot check", None, "recorded for Alpha"),
        ("alpha_member", "unbound_channel", "update: matrix spot check", "recorded for Alpha", NOTE),
        ("beta_member", "alpha_channel", "/cda updates", "BETA-UPDATE-TEXT", NOTE),
        ("coach_all", "unbound_channel", "/cda status", "Status — 3 cities", NOTE),
    ],
)
def test_spot_checks(
    matrix_bot: TestBot,
    speaker_key: str,
    conversation_key: str,
    text: str,
    private: str | None,
    public: str,
) -> None:
    speaker = next(s for s in SPEAKERS if s.key == speaker_key)
    conversation = next(c for c in CONVERSATIONS if c.key == conversation_key)
    message = _message(matrix_bot, speaker, conversation, text)
    Dispatcher(matrix_bot.engine, matrix_bot.clock).handle(message)
    rows = [(r.recipient, r.payload["text"]) for r in _reply_rows(matrix_bot, message)]
    to_sender = [t for who, t in rows if who == speaker.identity]
    to_channel = [t for who, t in rows if who == conversation.identity]
    assert len(rows) == len(to_sender) + len(to_channel) == (2 if private else 1), rows
    assert len(to_channel) == 1 and public in to_channel[0], rows
    if private:
        assert private in to_sender[0], rows


# -- end to end through the Slack server ----------------------------------------------------------------

COACH_AB = next(s for s in SPEAKERS if s.key == "coach_ab")
BETA_MEMBER = next(s for s in SPEAKERS if s.key == "beta_member")


@pytest.fixture
def slack_run(running: Running) -> Running:
    """The Slack `running` world plus a coach of Alpha and Beta and a Beta member, both on Slack."""
    with running.bot.store() as store:
        now = running.bot.clock.now()
        admin.add_coach(store, COACH_AB.identity, ["alpha", "beta"], now, "Cora")
        admin.add_member(store, BETA_MEMBER.identity, "beta", now, "Noor")
    return running


def _params(call: Call) -> str:
    return json.dumps(call.params, ensure_ascii=False)


@pytest.mark.parametrize("how", ["mention", "channel_text"])
@pytest.mark.parametrize(
    ("speaker", "text", "private_mark"),
    [
        pytest.param(COACH_AB, "cda status beta", "Status — Beta", id="coach_ab-status_beta"),
        pytest.param(BETA_MEMBER, "cda updates", "BETA-UPDATE-TEXT", id="beta_member-updates"),
    ],
)
def test_slack_channel_message_showing_another_city_goes_to_a_dm(
    slack_run: Running, speaker: Speaker, text: str, private_mark: str, how: str
) -> None:
    ts = "1700000100.000100"
    said = {"channel": CHANNEL, "user": speaker.user, "ts": ts}
    if how == "mention":
        slack_run.event(event_body({"type": "app_mention", **said, "text": f"<@{BOT_USER}> {text}"}, "EvM"))
        # Slack sends the mention as a plain message too; it must not be answered a second time.
        echo = {"type": "message", "channel_type": "channel", **said, "text": f"<@{BOT_USER}> {text}"}
        slack_run.event(event_body(echo, "EvMECHO"))
    else:
        slack_run.event(
            event_body({"type": "message", "channel_type": "channel", **said, "text": text}, "EvT")
        )
    slack_run.mock.wait_for("chat.postMessage", 2)
    slack_run.settle()
    posts = slack_run.mock.named("chat.postMessage")
    in_channel = [p for p in posts if p.params["channel"] == CHANNEL]
    to_person = [p for p in posts if p.params["channel"] == speaker.user]
    assert len(posts) == len(in_channel) + len(to_person) == 2, [p.params for p in posts]
    for post in in_channel:
        assert "beta" not in _params(post).lower(), post.params
    [note] = in_channel
    assert note.params["text"] == NOTE and note.params["thread_ts"] == ts
    [direct] = to_person
    assert private_mark in _params(direct) and direct.params.get("thread_ts") is None
    assert slack_run.mock.named("response_url") == []


@pytest.mark.parametrize(
    ("speaker", "text", "private_mark"),
    [
        pytest.param(COACH_AB, "status beta", "Status — Beta", id="coach_ab-status_beta"),
        pytest.param(BETA_MEMBER, "updates", "BETA-UPDATE-TEXT", id="beta_member-updates"),
    ],
)
def test_slack_slash_command_answers_only_through_the_response_url(
    slack_run: Running, speaker: Speaker, text: str, private_mark: str
) -> None:
    response = slack_run.form(
        {
            "token": "unused",
            "team_id": TEAM,
            "channel_id": CHANNEL,
            "channel_name": "alpha-team",
            "user_id": speaker.user,
            "user_name": speaker.key,
            "command": "/cda",
            "text": text,
            "response_url": f"{slack_run.mock.base_url}/response/audience",
            "trigger_id": f"trig-audience-{speaker.key}",
            "api_app_id": "A0001",
        }
    )
    assert response.status_code == 200 and response.text == ""  # nothing in the acknowledgement either
    [answer] = slack_run.mock.wait_for("response_url")
    slack_run.settle()
    assert answer.params["response_type"] == "ephemeral"
    assert private_mark in _params(answer)
    # Nothing posted anywhere: not in the channel, and no note is needed, as nobody else saw the command.
    assert slack_run.mock.named("chat.postMessage") == []
    assert len(slack_run.mock.named("response_url")) == 1
