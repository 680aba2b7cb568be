"""Local service days: the day a moment belongs to when days turn at a local hour, not at UTC midnight.

Transit and charging days in Shanghai run from about 03:00 to 03:00 Beijing time; UTC midnight is 08:00 there,
in the morning peak. A pseudonym keyed by the service day therefore changes while the city sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class ServiceDay:
    """Days that start at ``boundary_s`` seconds after local midnight in ``time_zone``."""

    time_zone: str = "UTC"
    boundary_s: int = 0
    _offsets: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.time_zone!r}") from None
        if not 0 <= self.boundary_s < 86_400:
            raise ValueError(f"the day boundary must lie within a day, got {self.boundary_s} s")

    def _offset_ms(self, epoch_ms: int) -> int:
        # UTC offsets change on whole hours (daylight saving): one zone lookup per hour, then a dict hit.
        hour = epoch_ms // HOUR_MS
        offset = self._offsets.get(hour)
        if offset is None:
            if len(self._offsets) > 10_000:
                self._offsets.clear()
            moment = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(ZoneInfo(self.time_zone))
            delta = moment.utcoffset() or timedelta(0)
            offset = self._offsets[hour] = int(delta.total_seconds() * 1000)
        return offset

    def index(self, epoch_ms: int) -> int:
        """The service day holding ``epoch_ms``, as days since 1970-01-01 of its local calendar date."""
        return (epoch_ms + self._offset_ms(epoch_ms) - self.boundary_s * 1000) // DAY_MS

    def label(self, epoch_ms: int) -> str:
        """The service day's local date, ``YYYY-MM-DD`` (the date on which it starts)."""
        return datetime.fromtimestamp(self.index(epoch_ms) * 86_400, tz=UTC).strftime("%Y-%m-%d")


UTC_DAYS = ServiceDay()


def parse_clock(text: str) -> int:
    """``HH:MM`` → seconds after midnight; ValueError when it is not a time of day."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return h * 3600 + m * 60
