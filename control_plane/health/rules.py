"""From a feed's figures to one state with reasons in words, and the five quality dimensions.

States, worst first: ``down`` (nothing heard from the feed's adapter), ``stale`` (the adapter is there
but no data came within the feed's threshold), ``degraded`` (data flows but a quality figure is out of
bounds), ``ok``. The dimensions are those of the city's open-data plan: truthfulness (真实性),
normativity (规范性), completeness (完整性), timeliness (及时性), usability (可用性).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..figures import merge, percentile_ms
from .thresholds import FeedThresholds

STATES: tuple[str, ...] = ("ok", "degraded", "stale", "down")  # best first
DIMENSIONS: tuple[str, ...] = ("truthfulness", "normativity", "completeness", "timeliness", "usability")


@dataclass
class FeedHealth:
    feed: str
    state: str = "ok"
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    dimensions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def worsen(self, state: str, dimension: str, reason: str) -> None:
        if STATES.index(state) > STATES.index(self.state):
            self.state = state
        self.reasons.append(reason)
        dim = self.dimensions[dimension]
        if STATES.index(state) > STATES.index(dim["state"]):
            dim["state"] = state
        dim["reasons"].append(reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "state": self.state,
            "reasons": self.reasons,
            "figures": self.figures,
            "dimensions": self.dimensions,
        }


def overall(feeds: Sequence[FeedHealth]) -> str:
    return max((f.state for f in feeds), key=STATES.index, default="ok")


def _ago(ms: float) -> str:
    s = ms / 1000
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def assess(
    feed: str,
    t: FeedThresholds,
    now_ms: int,
    feed_minutes: Sequence[Mapping[str, Any] | None],
    source_minutes: Mapping[str, Sequence[Mapping[str, Any] | None]],
    source_latest: Mapping[str, Mapping[str, Any]],
    started_ms: int | None = None,
    span_s: float | None = None,
) -> FeedHealth:
    """``feed_minutes``/``source_minutes``: the one-minute buckets of the last ``t.window_s`` (oldest
    first) for the feed (clean stage) and each of its sources; ``source_latest``: per source the latest
    times seen (``last_at``, ``last_success_ms``, ``last_record_ms``, ``last_error``), kept beyond the
    window. ``started_ms``: when the control plane started (a feed not heard from yet is not called down
    before ``down_after_s`` has passed since); ``span_s``: the seconds those buckets cover (default: a
    full minute each)."""
    h = FeedHealth(feed, dimensions={d: {"state": "ok", "reasons": [], "figures": {}} for d in DIMENSIONS})
    span = merge(feed_minutes)
    sources = {s: merge(m) for s, m in source_minutes.items()}
    count = max(len(feed_minutes), *(len(m) for m in source_minutes.values())) if source_minutes else len(feed_minutes)
    window_s = max(1.0, span_s if span_s else (count * 60.0 if count else t.window_s))

    src_records = sum(int(s.get("records", 0)) for s in sources.values())
    src_rejects = sum(int(s.get("rejects", 0)) for s in sources.values())
    src_dups = sum(int(s.get("duplicates", 0)) for s in sources.values())
    src_polls = sum(int(s.get("polls", 0)) for s in sources.values())
    src_errors = sum(int(s.get("errors", 0)) for s in sources.values())
    stage_in = int(span.get("in", 0))
    stage_rej = sum(span.get("rej", {}).values())
    stage_dup = int(span.get("dup", 0))
    reasons: dict[str, int] = dict(span.get("rej", {}))
    for s in sources.values():
        for r, n in s.get("rej", {}).items():
            reasons[r] = reasons.get(r, 0) + n

    latest = list(source_latest.values())
    heard = max((int(v.get("last_at", 0) or 0) for v in latest), default=0)
    last_success = max((int(v.get("last_success_ms", 0) or 0) for v in latest), default=0)
    last_record = max([int(v.get("last_record_ms", 0) or 0) for v in latest] + [int(span.get("last_at", 0) or 0)])
    last_seen = max(last_success, last_record)
    errors = [str(v["last_error"]) for v in latest if v.get("last_error")]

    # Of everything the sources delivered (sent on, or skipped as unchanged), else of the stage's input.
    received = src_records + int(sum(int(s.get("skipped", 0)) for s in sources.values()))
    reject_ratio = _ratio(src_rejects + stage_rej, (received + src_rejects) if received + src_rejects else stage_in)
    duplicate_ratio = _ratio(src_dups + stage_dup, received if received else stage_in)
    active = sum(int(n) for n in span.get("active", {}).values()) if span.get("active") else None
    completeness = _ratio(active, t.fleet) if (active is not None and t.fleet) else None
    lag = span.get("lag", [])
    p50, p99 = percentile_ms(lag, 0.5), percentile_ms(lag, 0.99)
    ilag = span.get("ilag", [])
    partitions: dict[str, int] = {}
    for m in feed_minutes[-1:]:
        partitions.update((m or {}).get("partitions", {}))

    h.figures = {
        "records_per_s": round((src_records or stage_in) / window_s, 3),
        "last_seen_ms": last_seen or None,
        "staleness_s": round((now_ms - last_seen) / 1000, 1) if last_seen else None,
        "expected_interval_s": t.expected_interval_s,
        "stale_after_s": t.stale_s,
        "reject_ratio": None if reject_ratio is None else round(reject_ratio, 4),
        "reject_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10]),
        "duplicate_ratio": None if duplicate_ratio is None else round(duplicate_ratio, 4),
        "entities_reporting": active,
        "fleet": t.fleet or None,
        "completeness": None if completeness is None else round(completeness, 4),
        "event_lag_p50_ms": p50,
        "event_lag_p99_ms": p99,
        "ingest_lag_p50_ms": percentile_ms(ilag, 0.5),
        "ingest_lag_p99_ms": percentile_ms(ilag, 0.99),
        "polls": src_polls,
        "poll_errors": src_errors,
        "window_s": window_s,
    }
    d = h.dimensions
    d["timeliness"]["figures"] = {
        k: h.figures[k]
        for k in ("staleness_s", "event_lag_p50_ms", "event_lag_p99_ms", "ingest_lag_p50_ms", "ingest_lag_p99_ms")
    }
    d["normativity"]["figures"] = {k: h.figures[k] for k in ("reject_ratio", "reject_reasons")}
    d["truthfulness"]["figures"] = {"duplicate_ratio": h.figures["duplicate_ratio"]}
    d["completeness"]["figures"] = {k: h.figures[k] for k in ("entities_reporting", "fleet", "completeness")}
    d["usability"]["figures"] = {k: h.figures[k] for k in ("records_per_s", "polls", "poll_errors")}

    names = ", ".join(t.sources) or feed
    since = started_ms if started_ms is not None else now_ms
    if not heard and not last_seen:
        if now_ms - since >= t.down_after_s * 1000:
            h.worsen("down", "usability", f"no figures from {names} since the control plane started")
        return h
    if heard and now_ms - heard > t.down_after_s * 1000:
        h.worsen("down", "usability", f"nothing heard from {names} for {_ago(now_ms - heard)}")
        return h
    if not last_seen or now_ms - last_seen > t.stale_s * 1000:
        age = f"for {_ago(now_ms - last_seen)}" if last_seen else "yet"
        why = f"no data from {names} {age} (expected every {t.expected_interval_s:g} s, stale after {t.stale_s:g} s)"
        if errors:
            why += f"; last error: {errors[0][:120]}"
        h.worsen("stale", "timeliness", why)
    if reject_ratio is not None and reject_ratio > t.reject_ratio:
        top = ", ".join(f"{r} ({n})" for r, n in list(h.figures["reject_reasons"].items())[:3])
        h.worsen("degraded", "normativity", f"reject ratio {reject_ratio:.1%} above {t.reject_ratio:.1%} ({top})")
    if duplicate_ratio is not None and duplicate_ratio > t.duplicate_ratio:
        h.worsen(
            "degraded",
            "truthfulness",
            f"duplicate ratio {duplicate_ratio:.1%} above {t.duplicate_ratio:.1%}",
        )
    if completeness is not None and t.completeness and completeness < t.completeness:
        h.worsen(
            "degraded",
            "completeness",
            f"{active} of {t.fleet} entities reporting ({completeness:.0%}, below {t.completeness:.0%})",
        )
    if p99 is not None and p99 > t.lag_p99_s * 1000:
        h.worsen("degraded", "timeliness", f"event-time lag p99 {p99 / 1000:.0f} s above {t.lag_p99_s:g} s")
    behind = max(partitions.values(), default=0)
    h.figures["consumer_lag_max"] = behind
    d["usability"]["figures"]["consumer_lag_max"] = behind
    if behind > t.consumer_lag:
        worst = max(partitions, key=lambda k: partitions[k])
        h.worsen("degraded", "usability", f"clean stage {behind} records behind on {worst}")
    if src_polls and src_errors >= src_polls and h.state == "ok":
        h.worsen("degraded", "usability", f"every poll of {names} failed in the window")
    return h
