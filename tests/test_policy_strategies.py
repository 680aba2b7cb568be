"""Hypothesis strategies for random, valid canonical Shanghai records of every feed (helper; no tests here)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import schemas

T0 = 1_780_000_000_000  # 2026-05-28, a fixed day so pseudonyms are comparable across examples

lngs = st.floats(min_value=120.9, max_value=122.0, allow_nan=False)
lats = st.floats(min_value=30.7, max_value=31.85, allow_nan=False)
times = st.integers(min_value=T0, max_value=T0 + 86_400_000 - 1)
OCCUPANCY = ["EMPTY", "MANY_SEATS_AVAILABLE", "FEW_SEATS_AVAILABLE", "STANDING_ROOM_ONLY", "FULL"]
CONNECTOR_TYPES = ["GB_T_AC", "GB_T_DC", "CCS2"]
CONNECTOR_STATUS = ["AVAILABLE", "CHARGING", "FAULTED", "OFFLINE"]


def _valid(feed: str, data: dict[str, Any]) -> dict[str, Any]:
    return schemas.to_dict(schemas.from_dict(feed, data))


@st.composite
def vehicle(draw: st.DrawFn, feed: str = "bus") -> dict[str, Any]:
    t = draw(times)
    vid = draw(st.sampled_from(["obu-1", "obu-2", "obu-3"]))
    data = {
        "id": vid,
        "source": "test",
        "observed_at": t,
        "expires_at": t + 60_000,
        "lng": draw(lngs),
        "lat": draw(lats),
        "mode": feed,
        "route_id": draw(st.sampled_from(["71", "49", "M1"])),
        "trip_id": "trip-1",
        "direction_id": draw(st.sampled_from([0, 1])),
        "label": "沪B-1001",
        "vehicle_id": vid,
        "bearing": draw(st.floats(min_value=0, max_value=359.99)),
        "speed_kmh": draw(st.floats(min_value=0, max_value=90)),
        "occupancy_status": draw(st.sampled_from(OCCUPANCY)),
        "occupancy_pct": draw(st.floats(min_value=0, max_value=100)),
        "passenger_count": draw(st.integers(0, 120)),
        "stop_id": "2035",
        "plate": "沪A12345",
        "driver_id": "D-77",
        "diagnostics": {"engine": "ok"},
    }
    return _valid(feed, data)


@st.composite
def parking(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(times)
    capacity = draw(st.integers(0, 300))
    data = {
        "id": draw(st.sampled_from(["P1", "P2"])),
        "source": "test",
        "observed_at": t,
        "expires_at": t + 60_000,
        "lng": draw(lngs),
        "lat": draw(lats),
        "capacity": capacity,
        "free": draw(st.integers(0, capacity)),
    }
    return _valid("parking", data)


@st.composite
def charging(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(times)
    n = draw(st.integers(0, 8))
    connectors = [
        {
            "id": f"c{i}",
            "type": draw(st.sampled_from(CONNECTOR_TYPES)),
            "status": draw(st.sampled_from(CONNECTOR_STATUS)),
            "power_kw": draw(st.sampled_from([7.0, 60.0, 120.0])),
            "fault_code": "E42",
        }
        for i in range(n)
    ]
    data = {
        "id": draw(st.sampled_from(["S1", "S2"])),
        "source": "test",
        "observed_at": t,
        "expires_at": t + 60_000,
        "lng": draw(lngs),
        "lat": draw(lats),
        "public": draw(st.booleans()),
        "connectors": connectors,
    }
    return _valid("charging", data)


@st.composite
def scenic(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(times)
    zones = [{"id": f"z{i}", "count": draw(st.integers(0, 60))} for i in range(draw(st.integers(0, 3)))]
    data = {
        "id": "SCN-YUYUAN",
        "source": "test",
        "observed_at": t,
        "expires_at": t + 60_000,
        "lng": 121.4921,
        "lat": 31.2272,
        "count": draw(st.integers(0, 60)),
        "capacity": draw(st.sampled_from([None, 100, 5000])),
        "zones": zones or None,
    }
    return _valid("scenic", {k: v for k, v in data.items() if v is not None})


@st.composite
def session(draw: st.DrawFn) -> dict[str, Any]:
    end = draw(st.integers(min_value=T0, max_value=T0 + 3 * 3_600_000))
    start = end - draw(st.integers(60_000, 4 * 3_600_000))
    data = {
        "id": f"sess-{draw(st.integers(0, 10**9))}",
        "source": "test",
        "observed_at": end,
        "expires_at": end + 60_000,
        "station_id": draw(st.sampled_from(["S1", "S2"])),
        "connector_id": "c1",
        "lng": 121.45,
        "lat": 31.2,
        "started_at": start,
        "ended_at": end,
        "energy_kwh": draw(st.floats(min_value=0, max_value=80)),
        "token_id": draw(st.sampled_from(["tok-a", "tok-b", "tok-c"])),
        "contract_id": "CN-XYZ-1",
        "plate": "沪A0000",
        "vin": "LSVAA000000000001",
    }
    return _valid("charging_sessions", data)


def _aggregate(feed: str, data: dict[str, Any]) -> dict[str, Any]:
    import msgspec

    from schemas.aggregates import validate_aggregate

    out: dict[str, Any] = msgspec.to_builtins(
        validate_aggregate(feed, {k: v for k, v in data.items() if v is not None})
    )
    return out


def _agg_base(draw: st.DrawFn, agg_id: str) -> dict[str, Any]:
    t = draw(times)
    return {"id": agg_id, "source": "streams", "observed_at": t, "expires_at": t + 180_000}


@st.composite
def agg_vehicles(draw: st.DrawFn) -> dict[str, Any]:
    mode, group = draw(st.sampled_from(["bus", "metro"])), draw(st.sampled_from(["route", "district"]))
    key = draw(st.sampled_from(["71", "49", "310101"]))
    data = {**_agg_base(draw, f"{mode}:{group}:{key}"), "mode": mode, "group": group, "key": key}
    data["vehicles"] = draw(st.integers(0, 200))
    return _aggregate("agg_vehicles", data)


@st.composite
def agg_parking(draw: st.DrawFn) -> dict[str, Any]:
    group = draw(st.sampled_from(["district", "scenic"]))
    key = draw(st.sampled_from(["310101", "SCN-YUYUAN"]))
    capacity = draw(st.integers(0, 500))
    free = draw(st.integers(0, capacity))
    pct = round(100 * (capacity - free) / capacity, 1) if capacity else None
    data = {**_agg_base(draw, f"{group}:{key}"), "group": group, "key": key, "lots": draw(st.integers(0, 20))}
    data.update(capacity=capacity, free=free, occupancy_pct=pct)
    return _aggregate("agg_parking", data)


@st.composite
def agg_charging(draw: st.DrawFn) -> dict[str, Any]:
    group = draw(st.sampled_from(["district", "connector_type"]))
    key = draw(st.sampled_from(["310115", "GB_T_DC"]))
    connectors = draw(st.integers(0, 12))
    available = draw(st.integers(0, connectors))
    data = {**_agg_base(draw, f"{group}:{key}"), "group": group, "key": key, "stations": draw(st.integers(0, 6))}
    data.update(connectors=connectors, available=available, out_of_service=draw(st.integers(0, connectors - available)))
    return _aggregate("agg_charging", data)


@st.composite
def agg_scenic(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 60) | st.integers(0, 9000))
    capacity = draw(st.sampled_from([None, 100, 5000]))
    data = {**_agg_base(draw, "SCN-YUYUAN"), "lng": 121.4921, "lat": 31.2272, "count": count, "capacity": capacity}
    if capacity:
        data["occupancy_pct"] = min(100.0, round(100 * count / capacity, 1))
        data["crowding"] = draw(st.sampled_from(["comfortable", "busy", "crowded", "saturated"]))
    if draw(st.booleans()):
        data["trend"] = draw(st.sampled_from(["rising", "steady", "falling"]))
        data["change_15min"] = draw(st.integers(-500, 500))
    return _aggregate("agg_scenic", data)


BATCHES: dict[str, st.SearchStrategy[list[dict[str, Any]]]] = {
    "bus": st.lists(vehicle("bus"), min_size=1, max_size=8),
    "metro": st.lists(vehicle("metro"), min_size=1, max_size=8),
    "parking": st.lists(parking(), min_size=1, max_size=8),
    "charging": st.lists(charging(), min_size=1, max_size=6),
    "scenic": st.lists(scenic(), min_size=1, max_size=6),
    "charging_sessions": st.lists(session(), min_size=0, max_size=40),
    "agg_vehicles": st.lists(agg_vehicles(), min_size=1, max_size=6),
    "agg_parking": st.lists(agg_parking(), min_size=1, max_size=6),
    "agg_charging": st.lists(agg_charging(), min_size=1, max_size=6),
    "agg_scenic": st.lists(agg_scenic(), min_size=1, max_size=6),
}
