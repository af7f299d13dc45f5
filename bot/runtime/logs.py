"""Structured logs for `serve`: one JSON object a line, with tokens and secrets taken out."""

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

# Slack tokens, and secrets that travel in query strings (OAuth `code`, `state`) or headers.
_PATTERNS = (
    re.compile(r"\bx(?:ox[abeprs]|app)-[A-Za-z0-9-]+"),
    re.compile(r"(?i)\b(code|state|token|secret|password|signature)=([^&\s\"']+)"),
    re.compile(r"(?i)(authorization|x-slack-signature)(['\"]?\s*[:=]\s*['\"]?)([^'\",\s]+(?: [^'\",\s]+)?)"),
)
# uvicorn's `color_message` repeats the message with terminal colours: no use in a JSON line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
REDACTED = "[redacted]"


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _PATTERNS[0].sub(REDACTED, text)
        text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}={REDACTED}", text)
        return _PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def configure(secrets: Iterable[str] = (), level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Every log line, ours, uvicorn's and the SDKs', goes out as redacted JSON on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # APScheduler announces every run of every job; our own pass log says what a pass did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # twilio's client logs every request and answer, headers and all: eleven lines a WhatsApp message.
    logging.getLogger("twilio").setLevel(logging.WARNING)


class Tally:
    """A warning said at most once per `seconds`, with how many times it happened since it was last
    said: under overload a line per refusal would cost the time refusing saves."""

    def __init__(self, log: logging.Logger, message: str, seconds: float = 10.0) -> None:
        self.log, self.message, self.seconds = log, message, seconds
        self._count = 0
        self._said = -seconds

    def count(self, **extra: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._said >= self.seconds:
            self.log.warning(self.message, extra={**extra, "times": self._count})
            self._count, self._said = 0, now
