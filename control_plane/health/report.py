"""The health report served on ``/health`` and ``/health/feeds`` (schema: docs/control-plane.md). Pure:
it reads the one-minute buckets through a function, so the same code runs over Faust's tables and over
plain dicts in tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..figures import scaled
from .rules import assess, overall
from .thresholds import Thresholds

SCHEMA_VERSION = 1
WS_FRESH_MS = 30_000  # a WebSocket node not heard from for this long is left out of the totals
# A source not named in the thresholds file still gets checked, under the feed it reports.
Minutes = Callable[[str, int], Sequence[Mapping[str, Any] | None]]  # (key, count) → buckets, oldest first


def feed_sources(thresholds: Thresholds, latest: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {feed: list(t.sources) for feed, t in thresholds.feeds.items()}
    for key, value in latest.items():
        if not key.startswith("source:"):
            continue
        source = key.removeprefix("source:")
        feed = thresholds.feed_of_source(source) or str(value.get("feed", ""))
        if feed and source not in out.setdefault(feed, []):
            out[feed].append(source)
    return out


def sliding(minutes: Minutes, key: str, count: int, now_ms: int) -> list[Mapping[str, Any] | None]:
    """The last ``count - 1`` minutes' worth of figures as a sliding window: the current (partial) minute,
    the complete ones before it, and of the oldest only the share not yet slid past. A window made of whole
    minutes would change length at each minute's turn, and a ratio that had just dropped below its
    threshold could jump back above it (an alert cleared, then raised again, with nothing new)."""
    buckets = list(minutes(key, count))
    if len(buckets) == count and count > 1:
        buckets[0] = scaled(buckets[0], 1.0 - (now_ms % 60_000) / 60_000)
    return buckets


def build_report(
    now_ms: int,
    thresholds: Thresholds,
    minutes: Minutes,
    latest: Mapping[str, Mapping[str, Any]],
    samples: Mapping[str, Sequence[Mapping[str, Any]]],
    started_ms: int,
    feeds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every feed's state, reasons, figures and dimensions; ``state`` overall; ``ok`` false when any feed
    is stale or down (what makes ``/health`` answer 503)."""
    by_feed = feed_sources(thresholds, latest)
    names = list(feeds) if feeds is not None else list(by_feed)
    results = []
    for feed in names:
        t = thresholds.for_feed(feed)
        count = max(1, int(t.window_s // 60)) + 1
        srcs = by_feed.get(feed, [])
        health = assess(
            feed,
            t,
            now_ms,
            sliding(minutes, f"feed:{feed}", count, now_ms),
            {s: sliding(minutes, f"source:{s}", count, now_ms) for s in srcs},
            {s: latest.get(f"source:{s}", {}) for s in srcs},
            started_ms=started_ms,
            span_s=(count - 1) * 60.0,
        )
        body = health.to_json()
        body["sources"] = {
            s: {k: latest.get(f"source:{s}", {}).get(k) for k in ("last_at", "last_success_ms", "last_record_ms",
                                                                  "last_error")}
            for s in srcs
        }  # fmt: skip
        body["samples"] = list(samples.get(feed, []))[-5:]
        results.append((health, body))
    state = overall([h for h, _ in results])
    failing = [f"{h.feed}: {h.state} ({'; '.join(h.reasons)})" for h, _ in results if h.state in ("stale", "down")]
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": now_ms,
        "state": state,
        "ok": not failing,
        "reasons": failing,
        "feeds": [b for _, b in results],
        "websocket": websocket(latest, now_ms),
    }


def websocket(latest: Mapping[str, Mapping[str, Any]], now_ms: int) -> dict[str, Any]:
    """Connections and subscriptions per tier over the WebSocket nodes heard from lately."""
    nodes = [v for k, v in latest.items() if k.startswith("ws:") and now_ms - int(v.get("last_at", 0)) <= WS_FRESH_MS]
    conn: dict[str, int] = {}
    subs: dict[str, int] = {}
    for v in nodes:
        for tier, n in dict(v.get("conn", {})).items():
            conn[tier] = conn.get(tier, 0) + int(n)
        for tier, n in dict(v.get("subs", {})).items():
            subs[tier] = subs.get(tier, 0) + int(n)
    return {"nodes": len(nodes), "connections": conn, "subscriptions": subs}


def history(minutes: Minutes, key: str, now_ms: int, count: int = 60) -> list[dict[str, Any]]:
    """The last ``count`` minutes of one key, as points for a chart (minutes without figures are zeros)."""
    start = (now_ms // 60_000 - count + 1) * 60_000
    out = []
    for i, b in enumerate(minutes(key, count)):
        b = b or {}
        out.append(
            {
                "minute": start + i * 60_000,
                "records": int(b.get("records", b.get("in", 0))),
                "rejects": int(b["rejects"]) if "rejects" in b else sum(b.get("rej", {}).values()),
                "duplicates": int(b.get("duplicates", b.get("dup", 0))),
            }
        )
    return out
