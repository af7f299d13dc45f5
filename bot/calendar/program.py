"""The program calendar as data: phases and key events of a cohort, loaded from a YAML file."""

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator, model_validator

from bot.calendar.sessions import FIRST_YEAR, LAST_YEAR, in_years
from bot.core.i18n import translator

DEFAULT_PROGRAM = Path(__file__).parent / "data" / "program-2026-27.yaml"

# A name or line of text: one string, or a mapping of language code to string.
LocalText = str | dict[Literal["en", "es", "pt"], str]


def next_month(first: dt.date) -> dt.date:
    """The first day of the month after the one `first` is in."""
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def local(text: LocalText, language: str) -> str:
    if isinstance(text, str):
        return text
    return text.get(language) or text.get("en") or next(iter(text.values()))  # type: ignore[call-overload]


def _in_range(day: dt.date) -> dt.date:
    # The years sessions keep to: the scheduler works out days around the program's (a phase ending on
    # 31 Dec 9999 made every pass raise OverflowError).
    if not in_years(day.year):
        raise ValueError(f"{day.isoformat()} is out of range: give a date from {FIRST_YEAR} to {LAST_YEAR}")
    return day


Day = Annotated[dt.date, AfterValidator(_in_range)]


class Phase(BaseModel):
    key: str
    name: LocalText
    start: Day
    end: Day
    pathway: Literal["implementation", "capacity"] | None = None
    precision: Literal["day", "month"] = "month"
    involves: list[LocalText] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> "Phase":
        if self.end < self.start:
            raise ValueError(f"phase '{self.key}' ends before it starts")
        return self


class Event(BaseModel):
    """A key event. Exactly one of: `date`, `week_of`, `start`+`end`, `month`, `phase`, `per_city`."""

    key: str
    name: LocalText
    pathway: Literal["implementation", "capacity"] | None = None
    date: Day | None = None
    week_of: Day | None = None
    start: Day | None = None
    end: Day | None = None
    month: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    phase: str | None = None
    per_city: bool = False

    @field_validator("month")
    @classmethod
    def _month_in_range(cls, month: str | None) -> str | None:
        if month is not None and not in_years(int(month[:4])):
            raise ValueError(f"{month} is out of range: give a month from {FIRST_YEAR} to {LAST_YEAR}")
        return month

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
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"event '{self.key}' ends before it starts")
        return self

    @property
    def fixed(self) -> bool:
        """True when the program has fixed the day, week or window of the event."""
        return self.date is not None or self.week_of is not None or self.start is not None

    @property
    def month_start(self) -> dt.date | None:
        if self.month is None:
            return None
        year, month = self.month.split("-")
        return dt.date(int(year), int(month), 1)

    def span(self, program: "Program") -> tuple[dt.date, dt.date] | None:
        """First and last day the event may fall on, when known."""
        if self.date:
            return self.date, self.date
        if self.week_of:
            return self.week_of, self.week_of + dt.timedelta(days=6)
        if self.start and self.end:
            return self.start, self.end
        if self.month_start:
            return self.month_start, next_month(self.month_start) - dt.timedelta(days=1)
        if self.phase:
            phase = program.phase(self.phase)
            return (phase.start, phase.end) if phase else None
        return None

    def applies_to(self, pathway: str | None) -> bool:
        return self.pathway is None or self.pathway == (pathway or "implementation")


class FieldError(ValueError):
    """A check across fields that blames one of them: `location` is where it sits in the document
    (`events.3.phase`), so that the file's line names that field rather than the top of the file."""

    def __init__(self, message: str, location: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.location = location


def _unique(section: str, keys: list[str]) -> None:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise FieldError(f"key '{key}' is used twice", (section, index, "key"))
        seen.add(key)


class Program(BaseModel):
    cohort: str
    phases: list[Phase]
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> "Program":
        _unique("phases", [p.key for p in self.phases])
        _unique("events", [e.key for e in self.events])
        keys = {p.key for p in self.phases}
        for index, event in enumerate(self.events):
            if event.phase is not None and event.phase not in keys:
                raise FieldError(
                    f"event '{event.key}' names unknown phase '{event.phase}'", ("events", index, "phase")
                )
        return self

    def phase(self, key: str) -> Phase | None:
        return next((p for p in self.phases if p.key == key), None)

    def event(self, key: str) -> Event | None:
        return next((e for e in self.events if e.key == key), None)

    def phases_for(self, pathway: str | None) -> list[Phase]:
        """The phases a city on `pathway` goes through; a city not yet placed follows implementation."""
        wanted = pathway or "implementation"
        return [p for p in self.phases if p.pathway in (None, wanted)]

    def phase_on(self, day: dt.date, pathway: str | None) -> Phase | None:
        return next((p for p in self.phases_for(pathway) if p.start <= day <= p.end), None)

    def next_phase(self, day: dt.date, pathway: str | None) -> Phase | None:
        return next(
            (p for p in sorted(self.phases_for(pathway), key=lambda p: p.start) if p.start > day), None
        )

    @property
    def first_day(self) -> dt.date | None:
        """The first day any phase or event covers (None: none is dated). Before it the program has not
        begun: the scheduler sends no momentum nudges or weekly digests, and counts a city's quiet days
        from it."""
        return min((start for start, _end in self._spans()), default=None)

    @property
    def last_day(self) -> dt.date | None:
        """The last day any phase or event covers (None: none has a known end). After it the program is
        over: the scheduler sends no more momentum nudges or weekly digests."""
        return max((end for _start, end in self._spans()), default=None)

    def _spans(self) -> list[tuple[dt.date, dt.date]]:
        spans = [(p.start, p.end) for p in self.phases]
        return spans + [span for event in self.events if (span := event.span(self)) is not None]

    def phase_label(self, day: dt.date, pathway: str | None, language: str = "en") -> str:
        _ = translator(language).gettext
        phase = self.phase_on(day, pathway)
        if phase is not None:
            return local(phase.name, language)
        if self.phases and day < min(p.start for p in self.phases):
            return _("Before the program starts")
        if self.phases and day > max(p.end for p in self.phases):
            return _("Program complete")
        return _("Between phases")


class _Loader(yaml.SafeLoader):
    """Leaves dates as text, so that a bad one is reported by the validator with its line, and refuses
    a key given twice in a mapping, which PyYAML reads as the last one given (the first lost silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[str, int] = {}
        for key, _value in node.value:
            # Keys a merge (`<<: *base`) brings in may be given again: that is what a merge is for.
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if key.value in lines:
                problem = f"key '{key.value}' is given twice, first on line {lines[key.value]}"
                raise yaml.constructor.ConstructorError(None, None, problem, key.start_mark)
            lines[key.value] = key.start_mark.line + 1
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class ProgramFileError(ValueError):
    """A calendar file that cannot be used; the message names the line and field at fault."""


def parse_program(document: dict[str, Any]) -> Program:
    return Program.model_validate(document)


def load_program_file(path: Path) -> dict[str, Any]:
    """Read and validate a calendar file; the JSON-ready document, or ProgramFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProgramFileError(f"{path}: cannot read it ({error})") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader underneath
        document = _jsonable(document) if isinstance(document, dict) else document
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ProgramFileError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    except RecursionError:  # PyYAML and `_jsonable` recurse: no calendar is that deep
        why = "nested too deeply, or an alias inside itself"
        raise ProgramFileError(f"{path}: not valid YAML ({why})") from None
    if not isinstance(document, dict):
        raise ProgramFileError(f"{path}:1: a program calendar is a mapping with cohort, phases and events")
    try:
        program = parse_program(document)
    except ValidationError as error:
        first = error.errors()[0]
        blamed = first.get("ctx", {}).get("error")
        loc = blamed.location if isinstance(blamed, FieldError) else first["loc"]
        location = [str(part) for part in loc]
        line = _line_of(root, loc)
        field = ".".join(location) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise ProgramFileError(f"{path}:{line}: {field}: {message}") from None
    # The cohort names the calendar in `program load` and `show`, and tells a new cohort from the one in
    # force. Checked here, not by Program: a calendar loaded before is parsed again at every question.
    if not program.cohort.strip():
        line = _line_of(root, ("cohort",))
        raise ProgramFileError(f"{path}:{line}: cohort: must not be empty: name the cohort, e.g. 2027-28")
    return document


def _line_of(node: yaml.Node | None, location: tuple[Any, ...]) -> int:
    """The line (1-based) of the deepest YAML node that `location` reaches."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in location:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def _jsonable(value: Any) -> Any:
    # The store keeps JSON, whose keys are text (YAML allows `2027: …`).
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@cache
def default_document() -> dict[str, Any]:
    return load_program_file(DEFAULT_PROGRAM)


def program_from(document: dict[str, Any] | None) -> Program:
    """The loaded calendar, or the bundled 2026–27 one when none has been loaded."""
    return parse_program(document if document is not None else default_document())
