"""Record-level operations: filters, the session aggregation and derived fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from geo import blur

from .batch import Batch
from .model import RecordRule

RecordOp = Callable[[Batch, RecordRule], Batch]


def _only_public(batch: Batch, rule: RecordRule) -> Batch:
    batch.keep([v.get("public") is not False for v in batch.views])
    return batch


def _group_key(v: dict[str, Any], by: str, time_field: str, window_ms: int) -> tuple[Any, int] | None:
    when = v.get(time_field)
    if not isinstance(when, int) or isinstance(when, bool):
        return None
    return v.get(by), blur.truncate_time(when, window_ms)


def _suppress_small_groups(batch: Batch, rule: RecordRule) -> Batch:
    by, time_field = rule.params["by"], rule.params["time_field"]
    window_ms, k = int(rule.params["window_s"]) * 1000, int(rule.params["k"])
    keys = [_group_key(v, by, time_field, window_ms) for v in batch.views]
    sizes: dict[tuple[Any, int], int] = {}
    for key in keys:
        if key is not None:
            sizes[key] = sizes.get(key, 0) + 1
    batch.keep([key is not None and sizes[key] >= k for key in keys])
    return batch


def _aggregate_sessions(batch: Batch, rule: RecordRule) -> Batch:
    by, time_field = rule.params["by"], rule.params["time_field"]
    window_ms = int(rule.params["window_s"]) * 1000
    groups: dict[tuple[Any, int], list[int]] = {}
    for i, v in enumerate(batch.views):
        key = _group_key(v, by, time_field, window_ms)
        if key is not None and key[0] is not None:
            groups.setdefault(key, []).append(i)
    views: list[dict[str, Any]] = []
    first_of_group: list[int] = []
    for (station, start), members in groups.items():
        first = batch.views[members[0]]
        energy = sum(float(batch.views[i].get("energy_kwh") or 0.0) for i in members)
        agg: dict[str, Any] = {
            "id": f"{station}@{start}",
            "source": first.get("source"),
            "observed_at": start + window_ms,
            "expires_at": start + 2 * window_ms,
            by: station,
            "window_start": start,
            "window_end": start + window_ms,
            "sessions": len(members),
            "energy_kwh": energy,
        }
        if first.get("district") is not None:
            agg["district"] = first["district"]
        views.append(agg)
        first_of_group.append(members[0])
    index = np.asarray(first_of_group, dtype=np.intp)
    # Station-level location: the sessions of one station share it; take the first one's.
    return Batch(views, batch.lngs[index], batch.lats[index])


def _comfort(batch: Batch, rule: RecordRule) -> Batch:
    thresholds = [float(t) for t in rule.params["thresholds"]]
    labels = list(rule.params["labels"])
    for v in batch.views:
        count, capacity = v.get("count"), v.get("capacity")
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            continue
        # A count already banded above ("<5") is tiny against any capacity: lowest comfort band.
        ratio = count / capacity if isinstance(count, int) and not isinstance(count, bool) else 0.0
        band = sum(ratio >= t for t in thresholds)
        v["comfort_band"] = labels[band]
    return batch


RECORD_OPERATIONS: dict[str, RecordOp] = {
    "only_public": _only_public,
    "suppress_small_groups": _suppress_small_groups,
    "aggregate_sessions": _aggregate_sessions,
    "comfort": _comfort,
}
