"""What each tier sees of each feed under the default policy (docs/contracts.md API)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from geo import crs, grid
from geo.metro import metro_network
from streams.policy import PolicyEngine, PolicyError
from streams.policy.batch import positions_out

ENGINE = PolicyEngine(secret=b"engine-test")
T = 1_780_000_000_000
BASE = {"source": "test", "observed_at": T, "expires_at": T + 60_000}


def _bus(**extra: Any) -> dict[str, Any]:
    return {
        **BASE,
        "id": "obu-9",
        "lng": 121.4705,
        "lat": 31.2349,
        "vehicle_id": "obu-9",
        "label": "B1",
        "bearing": 22.6,
        "speed_kmh": 33.3,
        "occupancy_status": "FEW_SEATS_AVAILABLE",
        "occupancy_pct": 43.0,
        "passenger_count": 31,
        "plate": "沪A1",
        "driver_id": "D1",
        **extra,
    }


def test_contract_surface() -> None:
    assert ENGINE.policy_version == "2026.12.2"
    assert ENGINE.delay_ms("bus", "public") == 30_000
    assert ENGINE.min_interval_ms("bus", "public") == 30_000
    assert ENGINE.delay_ms("bus", "operator") == 0
    assert ENGINE.delay_ms("charging_sessions", "public") == 3_600_000
    with pytest.raises(PolicyError, match="unknown feed"):
        ENGINE.delay_ms("tram", "public")
    with pytest.raises(PolicyError, match="unknown tier"):
        ENGINE.apply("bus", "vip", [])


def test_bus_tiers() -> None:
    out = ENGINE.apply_all("bus", [_bus()], {"licensed": "wgs84"})
    lic, reg, pub = out["licensed"][0], out["registered"][0], out["public"][0]
    assert (lic["lng"], lic["lat"], lic["crs"]) == (121.4705, 31.2349, "wgs84")
    assert lic["vehicle_id"] == "obu-9" and lic["passenger_count"] == 31 and "plate" not in lic
    assert reg["bearing"] == 20.0 and reg["speed_kmh"] == 35.0 and reg["occupancy_pct"] == 40.0
    assert "vehicle_id" not in reg and "passenger_count" not in reg and reg["id"] != "obu-9"
    assert pub["bearing"] == 0.0 and "speed_kmh" not in pub and "occupancy_pct" not in pub
    assert pub["occupancy_status"] == "FEW_SEATS_AVAILABLE" and pub["id"] == reg["id"]
    assert pub["crs"] == "gcj02" and pub["policy_version"] == "2026.12.2"
    # The public point is a 50 m cell centre: snapping it again changes nothing.
    wgs = crs.gcj02_to_wgs84(pub["lng"], pub["lat"])
    assert grid.haversine_m(*wgs, *grid.snap(*wgs, 50.0)) < 0.1


def test_vehicle_public_id_is_keyed_and_stable_across_days() -> None:
    a = ENGINE.apply("bus", "public", [_bus(), _bus(observed_at=T + 1000), _bus(observed_at=T + 86_400_000)])
    assert a[0]["id"] == a[1]["id"] == a[2]["id"] != "obu-9"
    other_key = PolicyEngine(secret=b"another-key").apply("bus", "public", [_bus()])
    assert other_key[0]["id"] != a[0]["id"]


def test_metro_below_licensed_is_the_nearest_station() -> None:
    network = metro_network()
    station = network.station("2035")  # People's Square
    train = _bus(id="T1", mode="metro", lng=station.lng + 0.001, lat=station.lat + 0.0005, stop_id="999")
    view = ENGINE.apply("metro", "public", [train])[0]
    assert view["stop_id"] == "2035"
    assert (view["lng"], view["lat"]) == pytest.approx(crs.wgs84_to_gcj02(station.lng, station.lat), abs=1e-6)


def test_parking_k_floor_on_capacity() -> None:
    small = {**BASE, "id": "P1", "lng": 121.47, "lat": 31.23, "capacity": 12, "free": 0}
    big = {**small, "id": "P2", "capacity": 400, "free": 123}
    out = ENGINE.apply("parking", "public", [small, dict(small, free=3), dict(small, free=9), big])
    assert [v.get("free_band") for v in out[:3]] == ["0", "1-5", ">5"]
    assert "free" not in out[0] and out[3]["free"] == 123
    assert ENGINE.apply("parking", "registered", [small])[0]["free"] == 0


def test_charging_private_piles_never_leave_operator() -> None:
    conns = [
        {"id": f"c{i}", "type": "GB_T_DC", "status": "AVAILABLE", "power_kw": 60.0, "fault_code": "E1"}
        for i in range(4)
    ]
    home = {**BASE, "id": "H1", "lng": 121.4, "lat": 31.2, "public": False, "connectors": conns[:1]}
    station = {**BASE, "id": "S1", "lng": 121.4, "lat": 31.2, "connectors": conns}
    out = ENGINE.apply_all("charging", [home, station])
    assert [v["id"] for v in out["operator"]] == ["H1", "S1"]
    for tier in ("licensed", "registered", "public"):
        assert [v["id"] for v in out[tier]] == ["S1"]
    assert out["licensed"][0]["connectors"][0] == {
        "id": "c0",
        "type": "GB_T_DC",
        "status": "AVAILABLE",
        "power_kw": 60.0,
    }
    assert out["registered"][0]["connectors"][0] == {"id": "c0", "type": "GB_T_DC", "status": "AVAILABLE"}
    assert out["public"][0]["connector_summary"] == {"GB_T_DC": {"available": 4, "total": 4}}
    assert len(out["public"][0]["connectors"]) == 4


def test_scenic_rounding_bands_and_comfort() -> None:
    rec = {
        **BASE,
        "id": "SCN-YUYUAN",
        "lng": 121.49,
        "lat": 31.227,
        "count": 3712,
        "capacity": 5000,
        "zones": [{"id": "z1", "count": 7}, {"id": "z2", "count": 123}],
    }
    out = ENGINE.apply_all("scenic", [rec, dict(rec, count=4)])
    assert out["licensed"][0]["count"] == 3712
    assert out["registered"][0]["count"] == 3710
    assert out["registered"][0]["zones"] == [{"id": "z1", "count": "<10"}, {"id": "z2", "count": 120}]
    assert out["public"][0]["count"] == 3710 and out["public"][0]["comfort_band"] == "busy"
    assert "zones" not in out["public"][0]
    assert out["registered"][1]["count"] == "<5" and out["public"][1]["count"] == "<10"


def test_charging_sessions_pseudonymised_then_aggregated() -> None:
    hour = T - T % 3_600_000
    sessions = [
        {
            **BASE,
            "id": f"s{i}",
            "observed_at": hour + 60_000 * i + 7,
            "station_id": "ST1" if i < 12 else "ST2",
            "started_at": hour - 3_600_000 + 61_000 * i,
            "ended_at": hour + 60_000 * i + 7,
            "energy_kwh": 10.0,
            "token_id": "tok-a" if i % 2 else "tok-b",
            "vin": "LSV1",
            "connector_id": "c1",
            "lng": 121.4,
            "lat": 31.2,
        }
        for i in range(15)
    ]
    out = ENGINE.apply_all("charging_sessions", sessions)
    lic = out["licensed"]
    assert len(lic) == 12  # ST2 had 3 sessions in the hour: suppressed
    assert all(v["ended_at"] % 900_000 == 0 and v["started_at"] % 900_000 == 0 for v in lic)
    assert len({v["holder"] for v in lic}) == 2 and not {"token_id", "vin", "connector_id"} & set(lic[0])
    (reg,) = out["registered"]
    assert (reg["station_id"], reg["window_start"], reg["sessions"], reg["energy_kwh"]) == ("ST1", hour, 10, 120.0)
    (pub,) = out["public"]
    # 10 at registered may be 8 in truth: below k = 10, so only the band, and no energy figure.
    assert pub["sessions"] == "<10" and "energy_kwh" not in pub


def test_unknown_and_never_released_extra_keys_are_removed_below_operator() -> None:
    view = ENGINE.apply("bus", "licensed", [_bus(debug_blob="x", district="310101")])[0]
    assert "debug_blob" not in view and view["district"] == "310101"


def test_records_must_be_dicts() -> None:
    with pytest.raises(PolicyError, match="list of dicts"):
        ENGINE.apply("bus", "public", ["nope"])  # type: ignore[list-item]


def test_snapped_positions_are_converted_per_grid_column_and_row_as_one_by_one() -> None:
    rng = np.random.default_rng(50)
    x, y = grid.snap_arrays(rng.uniform(120.9, 122.1, 50_000), rng.uniform(30.7, 31.85, 50_000), 50.0)
    fast = positions_out(x, y, "gcj02", 6, cell_m=50.0)
    plain = positions_out(x, y, "gcj02", 6)
    for a, b in zip(fast, plain, strict=True):
        assert np.max(np.abs(a - b)) <= 1e-6 and (a == b).mean() > 0.9999
    # A stale hint (positions moved off the grid since) changes nothing: the conversion checks it.
    moved = x + 1e-7
    assert all(np.array_equal(a, b) for a, b in zip(positions_out(moved, y, "gcj02", 6, cell_m=50.0),
                                                    positions_out(moved, y, "gcj02", 6), strict=True))  # fmt: skip
