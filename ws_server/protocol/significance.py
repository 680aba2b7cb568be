"""Significance thresholds: send an entity again only when it changed enough for the subscriber to care.

The signature of what a stream last sent per entity is compared with the new record; any configured
criterion that fires lets the update through (metres moved, free slots / count changed, status changed).
"""

from __future__ import annotations

import math
from typing import Any

from .messages import Significance

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LNG_EQ = 111_320.0
_COUNT_FIELDS = ("free", "count", "available")
_STATUS_FIELDS = ("status", "occupancy_status", "stop_id", "band", "level", "comfort")

Signature = tuple[float, float, float | None, tuple[Any, ...]]


def signature(x: float, y: float, record: dict[str, Any]) -> Signature:
    count: float | None = None
    for name in _COUNT_FIELDS:
        value = record.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            count = float(value)
            break
    status: list[Any] = [record.get(name) for name in _STATUS_FIELDS]
    connectors = record.get("connectors")
    if isinstance(connectors, list):
        status.append(tuple(c.get("status") for c in connectors if isinstance(c, dict)))
    return (x, y, count, tuple(status))


def metres_between(x0: float, y0: float, x1: float, y1: float) -> float:
    dx = (x1 - x0) * _M_PER_DEG_LNG_EQ * math.cos(math.radians((y0 + y1) / 2))
    dy = (y1 - y0) * _M_PER_DEG_LAT
    return math.hypot(dx, dy)


def significant(rule: Significance, old: Signature, new: Signature) -> bool:
    if new[3] != old[3]:
        return True  # a status change is always significant
    if rule.status_only:
        return False
    placed = not (math.isnan(new[0]) or math.isnan(old[0]))
    if rule.metres is not None and placed and metres_between(old[0], old[1], new[0], new[1]) >= rule.metres:
        return True
    new_count, old_count = new[2], old[2]
    if rule.slots is not None and new_count is not None:
        return old_count is None or abs(new_count - old_count) >= rule.slots
    # Fields the rule does not cover change nothing for the subscriber.
    return rule.metres is None and rule.slots is None
