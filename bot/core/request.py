"""What a handler is given: who is speaking, the cities in scope, the arguments and the time."""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bot.core.i18n import Translator, translator
from bot.core.messages import InboundMessage
from store.models import City


class SpeakerRole(StrEnum):
    member = "member"
    coach = "coach"
    admin = "admin"
    guest = "guest"  # not on any roster, not in a bound channel


@dataclass
class Speaker:
    identity: str
    role: SpeakerRole
    name: str | None = None
    city: City | None = None  # a member's own city
    accessible_ids: list[int] = field(default_factory=list)  # every city this speaker may see

    @property
    def display(self) -> str:
        return self.name or self.identity


@dataclass
class Request:
    message: InboundMessage
    speaker: Speaker
    args: str
    now: datetime
    cities: list[City] = field(default_factory=list)  # the scope the dispatcher resolved
    channel_city: City | None = None
    include_all: bool = False
    days: int | None = None
    t: Translator = field(default_factory=lambda: translator("en"))

    def days_or(self, default: int, maximum: int = 366) -> int:
        """The `[days]` argument, kept between 1 and `maximum`."""
        return default if self.days is None else max(1, min(self.days, maximum))
