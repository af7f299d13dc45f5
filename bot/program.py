"""The program calendar as data: phases and key events of a cohort, loaded from a YAML file."""

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, model_validator

DEFAULT_PROGRAM = Path(__file__).parent / "data" / "program-2026-27.yaml"


class Phase(BaseModel):
    key: str
    name: str
    start: dt.date
    end: dt.date
    pathway: str | None = Field(default=None, pattern="^(implementation|capacity)$")
    involves: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> "Phase":
        if self.end < self.start:
            raise ValueError(f"phase '{self.key}' ends before it starts")
        return self


class Event(BaseModel):
    """A key event. Exactly one of: `date`, `week_of`, `start`+`end`, `month`, `phase`, `per_city`."""

    key: str
    name: str
    pathway: str | None = Field(default=None, pattern="^(implementation|capacity)$")
    date: dt.date | None = None
    week_of: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    month: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    phase: str | None = None
    per_city: bool = False

    @model_validator(mode="after")
    def _one_when(self) -> "Event":
        given = [
            self.date is not None,
            self.week_of is not None,
            self.start is not None or self.end is not None,
            self.month is not None,
            self.phase is not None,
            self.per_city,
        ]
        if sum(given) != 1:
            raise ValueError(
                f"event '{self.key}' needs exactly one of date, week_of, start+end, month, phase, per_city"
            )
        if (self.start is None) != (self.end is None):
            raise ValueError(f"event '{self.key}' needs both start and end")
        return self

    @property
    def fixed(self) -> bool:
        """True when the program has fixed the day (or days) of the event."""
        return self.date is not None or self.week_of is not None or self.start is not None


class Program(BaseModel):
    cohort: str
    phases: list[Phase]
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _phase_refs(self) -> "Program":
        keys = {p.key for p in self.phases}
        for event in self.events:
            if event.phase is not None and event.phase not in keys:
                raise ValueError(f"event '{event.key}' names unknown phase '{event.phase}'")
        return self

    def phase_on(self, day: dt.date, pathway: str | None) -> Phase | None:
        """The phase a city on `pathway` is in on `day`; a city not yet placed follows implementation."""
        wanted = pathway or "implementation"
        for phase in self.phases:
            if phase.start <= day <= phase.end and phase.pathway in (None, wanted):
                return phase
        return None

    def phase_label(self, day: dt.date, pathway: str | None) -> str:
        phase = self.phase_on(day, pathway)
        if phase is not None:
            return phase.name
        if self.phases and day < min(p.start for p in self.phases):
            return "Before the program starts"
        if self.phases and day > max(p.end for p in self.phases):
            return "Program complete"
        return "Between phases"


def parse_program(document: dict[str, Any]) -> Program:
    return Program.model_validate(document)


def read_program_file(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a program calendar is a mapping with cohort, phases and events")
    return _jsonable(document)


def _jsonable(value: Any) -> Any:
    # YAML gives date objects; the store keeps JSON, so dates go back to ISO strings.
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@cache
def default_document() -> dict[str, Any]:
    return read_program_file(DEFAULT_PROGRAM)


def program_from(document: dict[str, Any] | None) -> Program:
    """The loaded calendar, or the bundled 2026–27 one when none has been loaded."""
    return parse_program(document if document is not None else default_document())
