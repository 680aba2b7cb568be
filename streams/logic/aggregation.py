"""The aggregate feeds' content, computed from the latest state of the source feeds. Pure, no I/O.

Aggregates are snapshots recomputed from the latest record of every live entity (not running sums), so a
restarted or newly elected worker gets the same figures from the state in Redis, and publishing one twice
is harmless: each release has an ``observed_at`` and the tier fan-out drops anything not newer.

Documented choices:
- an entity counts while it is live: its latest record is not a ``stale``/``removed`` marker and its
  ``expires_at`` has not passed;
- crowding against capacity: comfortable < 50 %, busy 50–75 %, crowded 75–90 %, saturated ≥ 90 %;
- trend: the count now against the count 15 minutes earlier (the newest sample at or before then, if one
  is at most 5 minutes older than that); rising/falling when it moved by at least max(10, 5 % of the
  earlier count), else steady;
- "near a scenic area" for car parks: within 1,000 m (an easy walk) of the area's edge (its reference
  point plus its radius);
- charging aggregates count public stations only: private and home piles never leave the operator tier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.aggregates import AGGREGATE_SOURCE

CROWDING_THRESHOLDS: tuple[float, ...] = (0.50, 0.75, 0.90)
CROWDING_LEVELS: tuple[str, ...] = ("comfortable", "busy", "crowded", "saturated")
TREND_WINDOW_MS = 15 * 60_000
TREND_TOLERANCE_MS = 5 * 60_000
TREND_MIN_CHANGE = 10
TREND_MIN_RATIO = 0.05
HISTORY_STEP_MS = 60_000  # one scenic count sample a minute is enough for a 15-minute trend
HISTORY_KEEP_MS = TREND_WINDOW_MS + TREND_TOLERANCE_MS
NEAR_SCENIC_M = 1000.0
# An aggregate is re-published at least this often even when unchanged, and expires after AGG_TTL_MS.
REFRESH_MS = 60_000
AGG_TTL_MS = 3 * REFRESH_MS

# Which aggregate feeds each source feed contributes to.
AGGREGATES_OF: dict[str, tuple[str, ...]] = {
    "bus": ("agg_vehicles",),
    "metro": ("agg_vehicles",),
    "parking": ("agg_parking",),
    "charging": ("agg_charging",),
    "scenic": ("agg_scenic",),
}

OUT_OF_SERVICE = frozenset({"FAULTED", "OFFLINE"})


def is_live(rec: Mapping[str, Any], now: int) -> bool:
    return rec.get("state") not in ("stale", "removed") and int(rec.get("expires_at", 0)) > now


def crowding_level(count: int, capacity: int | None) -> str | None:
    if not capacity or capacity <= 0:
        return None
    ratio = count / capacity
    return CROWDING_LEVELS[sum(ratio >= t for t in CROWDING_THRESHOLDS)]


def trend(count: int, earlier: int | None) -> tuple[str | None, int | None]:
    """(trend label, change) of ``count`` against the count 15 minutes earlier; (None, None) if unknown."""
    if earlier is None:
        return None, None
    change = count - earlier
    threshold = max(TREND_MIN_CHANGE, TREND_MIN_RATIO * earlier)
    if change >= threshold:
        return "rising", change
    if change <= -threshold:
        return "falling", change
    return "steady", change


def _base(agg_id: str, now: int) -> dict[str, Any]:
    return {"id": agg_id, "source": AGGREGATE_SOURCE, "observed_at": now, "expires_at": now + AGG_TTL_MS}


# ------------------------------------------------------------------------------------------ vehicles


def vehicle_aggregates(mode: str, records: Iterable[Mapping[str, Any]], now: int) -> list[dict[str, Any]]:
    """Live vehicles of one mode per route and per district (a vehicle without one is not counted there)."""
    routes: dict[str, int] = {}
    districts: dict[str, int] = {}
    for rec in records:
        if not is_live(rec, now):
            continue
        route, district = rec.get("route_id"), rec.get("district")
        if route:
            routes[route] = routes.get(route, 0) + 1
        if district:
            districts[district] = districts.get(district, 0) + 1
    out = []
    for group, counts in (("route", routes), ("district", districts)):
        for key, n in sorted(counts.items()):
            agg = _base(f"{mode}:{group}:{key}", now)
            agg.update(mode=mode, group=group, key=key, vehicles=n)
            out.append(agg)
    return out


# ------------------------------------------------------------------------------------------- parking


@dataclass(frozen=True, slots=True)
class Place:
    """A scenic area as the aggregates need it."""

    code: str
    name: str
    lng: float
    lat: float
    radius_m: float
    capacity: int | None


class NearScenic:
    """Which scenic areas each car park is near (cached per lot and position: lots do not move)."""

    def __init__(self, places: Sequence[Place], within_m: float = NEAR_SCENIC_M) -> None:
        self.places = tuple(places)
        self.within_m = within_m
        self._cache: dict[tuple[str, float, float], tuple[str, ...]] = {}

    def of(self, lots: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
        keys = [(str(r["id"]), float(r.get("lng") or math.nan), float(r.get("lat") or math.nan)) for r in lots]
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if todo and self.places:
            lngs = np.array([k[1] for k in todo])
            lats = np.array([k[2] for k in todo])
            near: list[list[str]] = [[] for _ in todo]
            for p in self.places:
                # Equirectangular distance at the area: accurate to ~0.1 % at these few-kilometre scales.
                dx = (lngs - p.lng) * 111_195.0 * math.cos(math.radians(p.lat))
                dy = (lats - p.lat) * 111_195.0
                hit = np.hypot(dx, dy) <= p.radius_m + self.within_m
                for i in np.flatnonzero(hit).tolist():
                    near[i].append(p.code)
            if len(self._cache) > 100_000:
                self._cache.clear()
            for k, codes in zip(todo, near, strict=True):
                self._cache[k] = tuple(codes)
        return [self._cache.get(k, ()) for k in keys]


def _parking_group(agg_id: str, group: str, key: str, lots: list[Mapping[str, Any]], now: int) -> dict[str, Any]:
    capacity = free = reported_capacity = used = 0
    for lot in lots:
        cap, fr = lot.get("capacity"), lot.get("free")
        if isinstance(fr, int):
            free += fr
        if isinstance(cap, int):
            capacity += cap
            if isinstance(fr, int):
                reported_capacity += cap
                used += max(0, cap - fr)
    agg = _base(agg_id, now)
    agg.update(group=group, key=key, lots=len(lots), capacity=capacity, free=free)
    if reported_capacity > 0:
        agg["occupancy_pct"] = round(min(100.0, 100.0 * used / reported_capacity), 1)
    return agg


def parking_aggregates(
    records: Iterable[Mapping[str, Any]], now: int, near: NearScenic, names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Free slots and occupancy per district and near each scenic area, over open lots with a live report."""
    live = [r for r in records if is_live(r, now) and r.get("status") != "closed"]
    by_district: dict[str, list[Mapping[str, Any]]] = {}
    by_scenic: dict[str, list[Mapping[str, Any]]] = {}
    for lot, areas in zip(live, near.of(live), strict=True):
        if lot.get("district"):
            by_district.setdefault(str(lot["district"]), []).append(lot)
        for code in areas:
            by_scenic.setdefault(code, []).append(lot)
    out = [_parking_group(f"district:{k}", "district", k, v, now) for k, v in sorted(by_district.items())]
    for code, lots in sorted(by_scenic.items()):
        agg = _parking_group(f"scenic:{code}", "scenic", code, lots, now)
        if names and code in names:
            agg["name"] = names[code]
        out.append(agg)
    return out


# ------------------------------------------------------------------------------------------ charging


def charging_aggregates(records: Iterable[Mapping[str, Any]], now: int) -> list[dict[str, Any]]:
    """Connector availability of live public stations per district and per connector type."""
    districts: dict[str, list[int]] = {}  # key → [stations, connectors, available, out of service]
    types: dict[str, list[int]] = {}
    for st in records:
        if not is_live(st, now) or st.get("public") is False:
            continue
        conns = [c for c in st.get("connectors") or () if isinstance(c, Mapping)]
        seen_types = set()
        district = st.get("district")
        row = districts.setdefault(str(district), [0, 0, 0, 0]) if district else None
        if row is not None:
            row[0] += 1
        for c in conns:
            ctype = str(c.get("type", "OTHER"))
            status = c.get("status")
            trow = types.setdefault(ctype, [0, 0, 0, 0])
            if ctype not in seen_types:
                trow[0] += 1
                seen_types.add(ctype)
            for r in (row, trow):
                if r is not None:
                    r[1] += 1
                    r[2] += status == "AVAILABLE"
                    r[3] += status in OUT_OF_SERVICE
    out = []
    for group, prefix, rows in (("district", "district", districts), ("connector_type", "type", types)):
        for key, (stations, connectors, available, broken) in sorted(rows.items()):
            agg = _base(f"{prefix}:{key}", now)
            agg.update(
                group=group,
                key=key,
                stations=stations,
                connectors=connectors,
                available=available,
                out_of_service=broken,
            )
            out.append(agg)
    return out


# -------------------------------------------------------------------------------------------- scenic


@dataclass
class ScenicHistory:
    """Per scenic area, (time, count) samples of the last ~20 minutes, at most one a minute."""

    samples: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, code: str, t: int, count: int) -> bool:
        """Record a sample if the last one is a minute old; True if the history changed."""
        rows = self.samples.setdefault(code, [])
        if rows and t - rows[-1][0] < HISTORY_STEP_MS:
            return False
        rows.append((t, count))
        while rows and rows[0][0] < t - HISTORY_KEEP_MS:
            rows.pop(0)
        return True

    def count_at(self, code: str, t: int) -> int | None:
        """The newest sample at or before ``t``, if it is at most ``TREND_TOLERANCE_MS`` older than ``t``."""
        best = None
        for ts, count in self.samples.get(code, ()):
            if ts > t:
                break
            best = (ts, count)
        if best is None or t - best[0] > TREND_TOLERANCE_MS:
            return None
        return best[1]

    def merge(self, code: str, rows: Iterable[Sequence[int]]) -> None:
        """Merge samples recovered from storage (e.g. another worker's), keeping time order."""
        merged = dict(self.samples.get(code, ()))
        merged.update((int(t), int(c)) for t, c in rows)
        self.samples[code] = sorted(merged.items())


def scenic_aggregates(
    records: Iterable[Mapping[str, Any]],
    now: int,
    history: ScenicHistory,
    places: Mapping[str, Place] | None = None,
) -> tuple[list[dict[str, Any]], set[str]]:
    """Crowding and trend per live scenic area, and the codes whose history gained a sample."""
    out = []
    changed = set()
    for rec in records:
        if not is_live(rec, now) or not isinstance(rec.get("count"), int):
            continue
        code = str(rec["id"])
        count = int(rec["count"])
        place = (places or {}).get(code)
        capacity = rec.get("capacity") or (place.capacity if place else None)
        # The sample time is the count's own time, so a worker that takes over later agrees on the trend.
        observed = int(rec["observed_at"])
        label, change = trend(count, history.count_at(code, observed - TREND_WINDOW_MS))
        if history.add(code, observed, count):
            changed.add(code)
        agg = _base(code, now)
        for key in ("lng", "lat", "district"):
            if rec.get(key) is not None:
                agg[key] = rec[key]
        name = rec.get("name") or (place.name if place else None)
        if name:
            agg["name"] = name
        agg["count"] = count
        if capacity:
            agg["capacity"] = int(capacity)
            agg["occupancy_pct"] = round(min(100.0, 100.0 * count / capacity), 1)
            agg["crowding"] = crowding_level(count, int(capacity))
        if label is not None:
            agg["trend"] = label
            agg["change_15min"] = change
        out.append(agg)
    return sorted(out, key=lambda a: a["id"]), changed


# ---------------------------------------------------------------------------------------- aggregator

_TIMES = ("observed_at", "expires_at")


def _content(agg: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, repr(v)) for k, v in agg.items() if k not in _TIMES))


@dataclass
class Aggregator:
    """Turns source states into aggregate releases: changed ones, periodic refreshes, and a ``removed``
    marker for an aggregate key that no longer has any live entity."""

    near: NearScenic
    places: Mapping[str, Place] = field(default_factory=dict)
    history: ScenicHistory = field(default_factory=ScenicHistory)
    # (aggregate feed, id) → (content, last emitted record, time emitted), per source feed
    emitted: dict[str, dict[tuple[str, str], tuple[tuple[tuple[str, Any], ...], dict[str, Any], int]]] = field(
        default_factory=dict
    )

    def compute_source(
        self, source: str, records: Sequence[Mapping[str, Any]], now: int
    ) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
        """Every aggregate of ``source``'s feeds; returns (aggregate feed → records, scenic codes whose
        history changed)."""
        changed: set[str] = set()
        if source in ("bus", "metro"):
            result = {"agg_vehicles": vehicle_aggregates(source, records, now)}
        elif source == "parking":
            names = {code: p.name for code, p in self.places.items()}
            result = {"agg_parking": parking_aggregates(records, now, self.near, names)}
        elif source == "charging":
            result = {"agg_charging": charging_aggregates(records, now)}
        elif source == "scenic":
            recs, changed = scenic_aggregates(records, now, self.history, self.places)
            result = {"agg_scenic": recs}
        else:
            raise ValueError(f"no aggregates from feed {source!r}")
        return result, changed

    def releases(
        self, source: str, computed: Mapping[str, list[dict[str, Any]]], now: int
    ) -> dict[str, list[dict[str, Any]]]:
        """What to publish now: aggregates that changed or are due for a refresh, and removal markers."""
        memory = self.emitted.setdefault(source, {})
        out: dict[str, list[dict[str, Any]]] = {}
        current: set[tuple[str, str]] = set()
        for feed, recs in computed.items():
            for agg in recs:
                key = (feed, agg["id"])
                current.add(key)
                before = memory.get(key)
                if before is None or before[0] != _content(agg) or now - before[2] >= REFRESH_MS:
                    out.setdefault(feed, []).append(agg)
        for key, (_, last, _) in memory.items():
            if key not in current and last.get("state") != "removed":
                marker = {**last, "state": "removed", "observed_at": now, "expires_at": now + AGG_TTL_MS}
                out.setdefault(key[0], []).append(marker)
        return out

    def emitted_ok(self, source: str, released: Mapping[str, list[dict[str, Any]]], now: int) -> None:
        """Remember what was delivered (called only after delivery, so a failed one is retried)."""
        memory = self.emitted.setdefault(source, {})
        for feed, recs in released.items():
            for agg in recs:
                key = (feed, agg["id"])
                if agg.get("state") == "removed":
                    memory.pop(key, None)
                else:
                    memory[key] = (_content(agg), agg, now)

    def adopt(self, source: str, feed: str, previous: Iterable[dict[str, Any]]) -> None:
        """Take over the aggregates another worker published (e.g. from the Redis snapshot), so keys that
        have since lost every entity still get their removal marker. They count as due for a refresh."""
        memory = self.emitted.setdefault(source, {})
        for agg in previous:
            if agg.get("state") != "removed" and "id" in agg:
                memory[(feed, str(agg["id"]))] = ((), agg, 0)

    def forget_source(self, source: str) -> None:
        self.emitted.pop(source, None)


def places_from_geo() -> dict[str, Place]:
    """The bundled scenic areas (``geo.scenic``) as ``Place`` records."""
    from geo.scenic import scenic_areas

    return {
        a.code: Place(a.code, a.name_en or a.name_zh, a.lng, a.lat, a.radius_m, a.max_capacity)
        for a in scenic_areas().areas
    }


def source_of(feed: str, agg: Mapping[str, Any]) -> str | None:
    """The source feed an aggregate record was computed from (for handing over between workers)."""
    if feed == "agg_vehicles":
        mode = agg.get("mode")
        return mode if mode in ("bus", "metro") else None
    return {"agg_parking": "parking", "agg_charging": "charging", "agg_scenic": "scenic"}.get(feed)
