"""Per-feed health thresholds, read from a TOML file (``control_plane/health/thresholds.toml`` by default;
``SHFEEDS_HEALTH_THRESHOLDS`` or ``--thresholds`` point at another)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("thresholds.toml")


class ThresholdsError(ValueError):
    """A thresholds file that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class FeedThresholds:
    sources: tuple[str, ...] = ()
    expected_interval_s: float = 60.0  # how often the source publishes
    stale_after_s: float = 0.0  # no data for this long: stale (0: 3 × the interval + 15 s)
    down_after_s: float = 60.0  # no figures at all from the feed's adapter for this long: down
    window_s: float = 300.0  # span of the rates and ratios
    reject_ratio: float = 0.02  # above: degraded
    duplicate_ratio: float = 0.05  # above: degraded
    completeness: float = 0.0  # reporting / fleet below this: degraded (0: not checked)
    fleet: int = 0  # entities the inventory knows (0: unknown)
    lag_p99_s: float = 120.0  # event time → processed, above: degraded
    consumer_lag: int = 100_000  # records behind on any partition, above: degraded

    @property
    def stale_s(self) -> float:
        return self.stale_after_s or 3 * self.expected_interval_s + 15.0


@dataclass(frozen=True)
class Thresholds:
    defaults: FeedThresholds = field(default_factory=FeedThresholds)
    feeds: dict[str, FeedThresholds] = field(default_factory=dict)

    def for_feed(self, feed: str) -> FeedThresholds:
        return self.feeds.get(feed, self.defaults)

    def feed_of_source(self, source: str) -> str | None:
        for feed, t in self.feeds.items():
            if source in t.sources:
                return feed
        return None


_KNOWN = {f.name for f in fields(FeedThresholds)}


def _feed(base: FeedThresholds, table: dict[str, Any], where: str) -> FeedThresholds:
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise ThresholdsError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "sources":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise ThresholdsError(f"{where}.sources: a list of source names")
            values[key] = tuple(value)
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ThresholdsError(f"{where}.{key}: a number ≥ 0, got {value!r}")
        else:
            values[key] = int(value) if key in ("fleet", "consumer_lag") else float(value)
    return replace(base, **values)


def parse_thresholds(text: str, where: str = "thresholds") -> Thresholds:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ThresholdsError(f"{where}: {err}") from err
    defaults = _feed(FeedThresholds(), data.get("defaults", {}), f"{where}: [defaults]")
    feeds = {name: _feed(defaults, t, f"{where}: [feeds.{name}]") for name, t in data.get("feeds", {}).items()}
    return Thresholds(defaults, feeds)


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    p = Path(path) if path else DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ThresholdsError(f"cannot read thresholds file {p}: {err}") from err
    return parse_thresholds(text, p.name)
