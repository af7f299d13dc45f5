"""The terminal chat in a real terminal (a pseudo-terminal): a long or multi-line paste reaches the bot
whole, or is refused; never is the stump a terminal keeps of a long line stored."""

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select as query
from typer.testing import CliRunner

from bot.cli import app
from store.db import make_engine
from store.models import Update

pty = pytest.importorskip("pty")  # POSIX: where terminals keep a line to 4,095 bytes
ROOT = Path(__file__).resolve().parent.parent
NO_READLINE = "import sys; sys.modules['readline'] = None; "  # a Python without line editing


class Terminal:
    """`cda-bot chat` running in a pseudo-terminal; what it prints is collected as it comes."""

    def __init__(self, db_url: str, prelude: str = "") -> None:
        self.master, slave = pty.openpty()
        code = f"{prelude}from bot.cli import main; main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "chat", "--as", "console:ana", "--db", db_url],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=os.environ | {"TERM": "xterm"},
        )
        os.close(slave)
        self.output = ""

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.master], [], [], min(left, 0.05))[0]:
                try:
                    self.output += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the chat has ended
                    return

    def expect(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output and time.monotonic() < deadline:
            self.read(0.1)
        assert text in self.output, self.output[-500:]

    def expect_prompt(self, timeout: float = 20) -> None:
        """Wait for the prompt: only then is the terminal set up for reading (by readline, if any)."""
        deadline = time.monotonic() + timeout
        while not self.output.endswith("> ") and time.monotonic() < deadline:
            self.read(0.1)
        assert self.output.endswith("> "), self.output[-500:]

    def type(self, text: str) -> None:
        """Sent the way a terminal sends a paste: in chunks, while the echo is read."""
        data = text.encode()
        for start in range(0, len(data), 512):
            os.write(self.master, data[start : start + 512])
            self.read(0.005)

    def close(self) -> None:
        # Ctrl-D ends the chat only on an empty line: wait for the prompt after the last reply first.
        deadline = time.monotonic() + 5
        while not self.output.endswith("> ") and time.monotonic() < deadline:
            self.read(0.1)
        os.write(self.master, b"\x04")  # Ctrl-D: the chat ends
        self.read(1)
        self.process.wait(timeout=20)
        os.close(self.master)


@pytest.fixture
def demo_db(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert CliRunner().invoke(app, ["demo", "--db", url], input="").exit_code == 0
    engine = make_engine(url)
    yield engine
    engine.dispose()


def updates(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(query(Update.text).order_by(Update.id)).scalars())[1:]  # past the seed


def chat(engine: Engine, text: str, wait_for: str, prelude: str = "") -> str:
    terminal = Terminal(engine.url.render_as_string(hide_password=False), prelude)
    try:
        terminal.expect_prompt()
        terminal.type(text)
        terminal.expect(wait_for)
    finally:
        terminal.close()
    return terminal.output


def test_a_long_paste_is_stored_whole(demo_db: Engine) -> None:
    pytest.importorskip("readline")
    text = "tested the intake form with residents " * 160  # 6,080 characters on one line
    chat(demo_db, f"update: {text}\r", "Update #2 recorded")
    assert updates(demo_db) == [text.strip()]


def test_without_line_editing_a_line_the_terminal_cut_is_refused(demo_db: Engine) -> None:
    output = chat(demo_db, "update: " + "x" * 6000 + "\r", "nothing was sent", NO_READLINE)
    assert "limit of 4,095 characters" in output and "cda-bot say" in output
    assert updates(demo_db) == []


@pytest.mark.parametrize("prelude", ["", NO_READLINE], ids=["readline", "no-readline"])
def test_a_pasted_block_of_lines_is_one_message(demo_db: Engine, prelude: str) -> None:
    chat(demo_db, "update: first line\rsecond line\rthird line\r", "Update #2 recorded", prelude)
    assert updates(demo_db) == ["first line\nsecond line\nthird line"]


def test_a_bracketed_paste_is_one_message(demo_db: Engine) -> None:
    pytest.importorskip("readline")
    # What a terminal sends for a paste once readline asked for bracketed paste mode.
    chat(demo_db, "\x1b[200~update: one\nand two\x1b[201~\r", "Update #2 recorded")
    assert updates(demo_db) == ["one\nand two"]


@pytest.mark.parametrize("leave", ["exit", "quit", "/quit", "Exit"])
def test_exit_or_quit_leaves_the_chat_as_in_a_shell(demo_db: Engine, leave: str) -> None:
    url = demo_db.url.render_as_string(hide_password=False)
    said = "update: before leaving\n" + leave + "\nupdate: after leaving\n"
    result = CliRunner().invoke(app, ["chat", "--as", "console:ana", "--db", url], input=said)
    assert result.exit_code == 0, result.output
    assert updates(demo_db) == ["before leaving"]
    assert "didn't catch that" not in result.output


def test_an_empty_line_is_not_a_message(demo_db: Engine) -> None:
    url = demo_db.url.render_as_string(hide_password=False)
    said = "\n   \nupdate: after two empty lines\n"
    result = CliRunner().invoke(app, ["chat", "--as", "console:ana", "--db", url], input=said)
    assert result.exit_code == 0, result.output
    assert "empty message" not in result.output
    assert result.output.count("bot ") == 1, result.output  # the update's reply alone
    assert updates(demo_db) == ["after two empty lines"]
