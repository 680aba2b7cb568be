"""The stats records the stages, adapters and WebSocket nodes emit; how they fold into minutes. Pure.

A stats record is a small JSON object, one per batch and stage (``kind="stage"``), one per source and
emission period (``kind="source"``) or one per WebSocket node and period (``kind="ws"``). Counts in a
record are deltas since the previous one, so buckets are folded by adding; gauges (per-partition lag,
active entities, connections) keep their latest value.

Event-time lag is kept as counts over fixed bucket edges, so minutes merge by adding and the p50/p99 of
any span is read from the merged counts (at the precision of the edges, which is what a health check
needs).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

# Upper edges of the lag histogram, in milliseconds; the last bucket is everything above.
LAG_EDGES_MS: tuple[int, ...] = (
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000,
)  # fmt: skip
REASON_MAX = 60  # characters of a reject reason kept as its category


def reason_category(reason: str) -> str:
    """The part of a reject reason that names its kind (before the first colon), bounded in length."""
    head = reason.split(":", 1)[0].strip() or "unknown"
    return head[:REASON_MAX]


def lag_histogram(lags_ms: Iterable[int]) -> list[int]:
    counts = [0] * (len(LAG_EDGES_MS) + 1)
    for lag in lags_ms:
        counts[bisect_left(LAG_EDGES_MS, lag)] += 1  # the first edge at or above the lag
    return counts


def percentile_ms(hist: Sequence[int], q: float) -> int | None:
    """Upper edge of the bucket holding the ``q`` quantile (None without samples; above the top edge:
    the top edge, read as "at least")."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank and n:
            return LAG_EDGES_MS[min(i, len(LAG_EDGES_MS) - 1)]
    return LAG_EDGES_MS[-1]


def _add_hist(a: list[int], b: Sequence[int]) -> list[int]:
    if len(a) < len(b):
        a = a + [0] * (len(b) - len(a))
    for i, n in enumerate(b):
        a[i] += int(n)
    return a


def _add_counts(a: dict[str, int], b: Mapping[str, Any]) -> dict[str, int]:
    for k, n in b.items():
        a[k] = a.get(k, 0) + int(n)
    return a


# --------------------------------------------------------------------------------------- records


def stage_record(
    stage: str,
    worker: str,
    at_ms: int,
    records_in: int,
    feeds: Mapping[str, Mapping[str, Any]],
    partitions: Mapping[str, int],
) -> dict[str, Any]:
    """One batch of one stage. ``feeds``: per feed ``in``, ``out``, ``dup``, ``rej`` (reason → count),
    ``lag`` (event time → stage, histogram), ``ilag`` (ingest, the raw record's Kafka timestamp → the
    stage releasing it to the tier topics, histogram), ``active`` (entities this worker holds current); ``partitions``:
    ``"topic/partition"`` → records behind the high watermark."""
    return {
        "v": 1,
        "kind": "stage",
        "stage": stage,
        "worker": worker,
        "at": at_ms,
        "in": records_in,
        "feeds": {f: dict(v) for f, v in feeds.items()},
        "partitions": dict(partitions),
    }


def ws_record(
    node: str, at_ms: int, connections: Mapping[str, int], subscriptions: Mapping[str, int]
) -> dict[str, Any]:
    """One emission period of one WebSocket node: open connections and subscriptions per tier (gauges)."""
    return {"v": 1, "kind": "ws", "node": node, "at": at_ms, "conn": dict(connections), "subs": dict(subscriptions)}


def source_record(source: str, feed: str, at_ms: int, interval_s: float, **figures: Any) -> dict[str, Any]:
    """One emission period of one adapter source: ``polls``, ``errors``, ``records``, ``rejects``,
    ``duplicates`` (deltas), ``last_success_ms``, ``last_record_ms``, ``last_error``."""
    return {"v": 1, "kind": "source", "source": source, "feed": feed, "at": at_ms, "interval_s": interval_s, **figures}


# --------------------------------------------------------------------------------------- folding


def decode_stats(value: bytes) -> list[dict[str, Any]]:
    """The records of one ``ops.stats`` message: a JSON array of records (the emitter's bundle) or one
    record; anything else is not ours to judge and yields nothing (stats are best-effort figures)."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return []
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    return []


def fold_bundle(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every (key, delta) of several records folded into one delta per key, so a bundle costs one table
    write per key however many batches it reports."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        for key, delta in split(record):
            out[key] = fold(out.get(key), delta) if key in out else dict(delta)
    return out


SOURCE_COUNTS = ("polls", "errors", "records", "rejects", "duplicates", "skipped")


def split(record: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (table key, delta) pairs a stats record contributes: ``feed:<f>``, ``stage:<s>``, ``source:<s>``."""
    out: list[tuple[str, dict[str, Any]]] = []
    at = int(record.get("at", 0))
    if record.get("kind") == "stage":
        stage = str(record["stage"])
        worker = str(record.get("worker", "?"))
        partitions = dict(record.get("partitions", {}))
        out.append(
            (f"stage:{stage}", {"batches": 1, "in": int(record.get("in", 0)), "partitions": partitions, "last_at": at})
        )
        for feed, f in record.get("feeds", {}).items():
            delta: dict[str, Any] = {
                "in": int(f.get("in", 0)),
                "out": int(f.get("out", 0)),
                "dup": int(f.get("dup", 0)),
                "rej": dict(f.get("rej", {})),
                "lag": list(f.get("lag", [])),
                "last_at": at,
            }
            if "ilag" in f:
                delta["ilag"] = list(f["ilag"])
            if "active" in f:
                delta["active"] = {worker: int(f["active"])}
            mine = {tp: n for tp, n in partitions.items() if tp.rsplit("/", 1)[0].endswith(f"raw.{feed}")}
            if mine:
                delta["partitions"] = mine
            out.append((f"feed:{feed}", delta))
    elif record.get("kind") == "source":
        delta = {k: int(record.get(k, 0) or 0) for k in SOURCE_COUNTS}
        delta["last_at"] = at
        if record.get("rej"):
            delta["rej"] = dict(record["rej"])
        for k in ("last_success_ms", "last_record_ms", "last_error", "interval_s", "feed"):
            if record.get(k) is not None:
                delta[k] = record[k]
        out.append((f"source:{record['source']}", delta))
    elif record.get("kind") == "ws":
        conn = {str(t): int(n) for t, n in dict(record.get("conn", {})).items()}
        subs = {str(t): int(n) for t, n in dict(record.get("subs", {})).items()}
        out.append((f"ws:{record.get('node', '?')}", {"last_at": at, "conn": conn, "subs": subs}))
    return out


_TIMES = ("last_at", "last_success_ms", "last_record_ms")


def _is_count(key: str, value: Any) -> bool:
    """A plain count (a delta that adds up), as opposed to a time, a setting or a gauge."""
    return isinstance(value, int) and not isinstance(value, bool) and key not in (*_TIMES, "interval_s")


def fold(bucket: Mapping[str, Any] | None, delta: Mapping[str, Any]) -> dict[str, Any]:
    """A bucket with ``delta`` added: counts add, histograms add, gauges and times keep the latest."""
    out: dict[str, Any] = dict(bucket or {})
    for key, value in delta.items():
        if key in ("rej",):
            out[key] = _add_counts(dict(out.get(key, {})), value)
        elif key in ("lag", "ilag"):
            out[key] = _add_hist(list(out.get(key, [])), value)
        elif key in ("active", "partitions"):
            merged = dict(out.get(key, {}))
            merged.update(value)
            out[key] = merged
        elif key in _TIMES:
            out[key] = max(int(out.get(key, 0) or 0), int(value))
        elif _is_count(key, value):
            out[key] = int(out.get(key, 0)) + value
        else:
            out[key] = value
    return out


def scaled(bucket: Mapping[str, Any] | None, weight: float) -> dict[str, Any] | None:
    """``bucket`` with its counts and histograms multiplied by ``weight`` (rounded), gauges and times as
    they are: the share of a minute still inside a sliding window."""
    if not bucket:
        return None
    out: dict[str, Any] = {}
    for key, value in bucket.items():
        if key == "rej":
            out[key] = {k: round(int(n) * weight) for k, n in value.items()}
        elif key in ("lag", "ilag"):
            out[key] = [round(int(n) * weight) for n in value]
        elif _is_count(key, value):
            out[key] = round(value * weight)
        else:
            out[key] = value
    return out


def merge(buckets: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Several minutes as one span (oldest first, so the latest gauges win)."""
    out: dict[str, Any] = {}
    for b in buckets:
        if b:
            out = fold(out, b)
    return out
