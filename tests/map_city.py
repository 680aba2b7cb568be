"""The whole simulated city as the public tier sees it, for the map page's browser test: the simulator's
upstream bodies, parsed by the real adapters' formats and released by the real tier policy engine, with
event times moved so the records are current (the simulated clock runs at a chosen time of day)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from adapters.formats import parse_with
from adapters.simulators.city import SimulatedCity
from schemas.codecs import to_dict
from streams.policy.engine import PolicyEngine

FORMATS = {"bus": "sh-bus-gps", "metro": "gtfs-rt-vp", "parking": "sh-parking", "charging": "sh-charging"}
FORMATS["scenic"] = "sh-scenic"
# A busy moment: 15:00 Beijing time on 2 October 2026, in the National Day golden week, when the popular
# scenic areas fill up and the whole bus fleet is out.
GOLDEN_WEEK_AFTERNOON_MS = int(datetime(2026, 10, 2, 15, 0, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)


def workday_peak_ms() -> int:
    """08:00 Beijing time on Tuesday 29 September 2026: the morning peak, the whole bus fleet out."""
    return int(datetime(2026, 9, 29, 8, 0, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)


class PublicCity:
    """The simulated city from ``start_ms``, released for the public tier, with times shifted to ``now_ms``."""

    def __init__(self, now_ms: int, start_ms: int = GOLDEN_WEEK_AFTERNOON_MS, seed: int = 7, **counts: int) -> None:
        self.start_ms = start_ms
        self.shift_ms = now_ms - self.start_ms
        self.city = SimulatedCity(seed, start_ms=self.start_ms, monotonic=lambda: 0.0, **counts)
        self.engine = PolicyEngine(secret=b"map-browser-test")

    def records(self, feed: str, at_s: int | None = None, shift_ms: int | None = None) -> list[dict[str, Any]]:
        """The public tier's records of ``feed`` at simulated second ``at_s`` (default: the start)."""
        t_s = self.start_ms // 1000 if at_s is None else at_s
        body = self.city.feeds[feed].render(t_s, None, 0).body
        parsed = parse_with(FORMATS[feed], body, source="sim", received_at_ms=t_s * 1000)
        assert not parsed.rejects, parsed.rejects[:3]
        shift = self.shift_ms if shift_ms is None else shift_ms
        records = []
        for record in parsed.records:
            data = to_dict(record)
            data["observed_at"] += shift
            data["expires_at"] += shift
            records.append(data)
        return self.engine.apply(feed, "public", records)
