"""Property tests of the default policy over random Shanghai records (see docs/design-notes.md).

- no lower tier is more precise than a higher one: whenever two inputs look the same at a tier, they look
  the same at every tier below it (a lower tier is a function of the one above), and every field a lower
  tier carries is carried by the tier above or derived from it;
- a public/registered bus position lies within half a cell diagonal of the raw one after the CRS round trip;
- no never-released field appears below operator; every k floor holds; the same input gives the same output.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo import crs, grid
from schemas import TIERS
from streams.logic.fanout import encode_value
from streams.policy import PolicyEngine
from streams.policy.fields import DERIVED_FIELDS

from .test_policy_strategies import BATCHES

ENGINE = PolicyEngine(secret=b"property-test-secret")
FEEDS = list(BATCHES)
AGGREGATES = ["agg_vehicles", "agg_parking", "agg_charging", "agg_scenic"]
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
META = {"crs", "policy_version"}


def _strip(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in META}


@PROPS
@given(st.data())
def test_lower_tiers_carry_no_field_the_tier_above_lacks(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(FEEDS))
    out = ENGINE.apply_all(feed, data.draw(BATCHES[feed]))
    for upper, lower in itertools.pairwise(TIERS[1:]):
        upper_keys = set().union(*(v.keys() for v in out[upper])) if out[upper] else set()
        for view in out[lower]:
            extra = set(view) - upper_keys - set(DERIVED_FIELDS) - {f"{k}_band" for k in upper_keys}
            assert not extra, f"{feed}: {lower} carries {extra} that {upper} does not"
        assert len(out[lower]) <= len(out[upper])


def _perturb(record: dict[str, Any], draw: Callable[..., Any]) -> dict[str, Any]:
    """A near neighbour of ``record``: a few metres, a few units of each number away."""
    r = copy.deepcopy(record)
    if "lng" in r and draw(st.booleans()):
        r["lng"] += draw(st.floats(-3e-5, 3e-5))
        r["lat"] += draw(st.floats(-3e-5, 3e-5))
    for key, spread in (("bearing", 3.0), ("speed_kmh", 2.0), ("occupancy_pct", 3.0)):
        if key in r and draw(st.booleans()):
            r[key] = min(max(r[key] + draw(st.floats(-spread, spread)), 0.0), 99.9)
    for key in ("count", "free", "passenger_count", "vehicles", "available", "capacity", "connectors"):
        if key in r and isinstance(r[key], int) and draw(st.booleans()):
            r[key] = max(0, r[key] + draw(st.integers(-2, 2)))
            if key == "free":
                r[key] = min(r[key], r.get("capacity", r[key]))
    if "occupancy_pct" in r and draw(st.booleans()):
        r["occupancy_pct"] = min(max(r["occupancy_pct"] + draw(st.floats(-1.5, 1.5)), 0.0), 100.0)
    if r.get("zones") and draw(st.booleans()):
        r["zones"] = [dict(z, count=max(0, z["count"] + draw(st.integers(-2, 2)))) for z in r["zones"]]
    return r


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_lower_tier_is_a_function_of_the_tier_above(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(["bus", "metro", "parking", "scenic", "charging", *AGGREGATES]))
    first = data.draw(BATCHES[feed])[:1]
    second = [_perturb(first[0], data.draw)]
    a = ENGINE.apply_all(feed, first)
    b = ENGINE.apply_all(feed, second)
    for i, upper in enumerate(TIERS):
        if [_strip(v) for v in a[upper]] == [_strip(v) for v in b[upper]]:
            for lower in TIERS[i + 1 :]:
                assert [_strip(v) for v in a[lower]] == [_strip(v) for v in b[lower]], (feed, upper, lower)


def _raw_distance(view: dict[str, Any], raw: dict[str, Any]) -> float:
    lng, lat = crs.gcj02_to_wgs84(view["lng"], view["lat"])
    return grid.haversine_m(lng, lat, raw["lng"], raw["lat"])


@PROPS
@given(BATCHES["bus"])
def test_bus_positions_stay_within_half_a_cell_diagonal(records: list[dict[str, Any]]) -> None:
    out = ENGINE.apply_all("bus", records)
    # Output coordinates are rounded to 6 decimals (≤ 0.08 m); allow that on top of the cell bound.
    for tier, cell in (("registered", 10.0), ("public", 50.0)):
        for view, raw in zip(out[tier], records, strict=True):
            assert _raw_distance(view, raw) <= cell * math.sqrt(2) / 2 + 0.1
    for view, raw in zip(out["licensed"], records, strict=True):
        assert _raw_distance(view, raw) < 0.02


NEVER = {
    "bus": {"plate", "driver_id", "diagnostics"},
    "metro": {"plate", "driver_id", "diagnostics"},
    "parking": set(),
    "charging": set(),
    "scenic": set(),
    "charging_sessions": {"token_id", "contract_id", "plate", "vin"},
    **{feed: set() for feed in AGGREGATES},
}


@PROPS
@given(st.data())
def test_never_released_fields_stay_at_operator(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(FEEDS))
    records = data.draw(BATCHES[feed])
    out = ENGINE.apply_all(feed, records)
    raw_values = {str(r[f]) for r in records for f in NEVER[feed] if f in r}
    for tier in TIERS[1:]:
        for view in out[tier]:
            assert not NEVER[feed] & set(view)
            assert not raw_values & {str(v) for v in view.values()}
            for c in view.get("connectors", []) if feed == "charging" else []:
                assert "fault_code" not in c
    for view in out["registered"] + out["public"]:
        if feed in ("bus", "metro"):
            assert "vehicle_id" not in view and "passenger_count" not in view
            assert view["id"] not in {r["id"] for r in records}


def _session_groups(records: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    sizes: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r["station_id"], r["ended_at"] - r["ended_at"] % 3_600_000)
        sizes[key] = sizes.get(key, 0) + 1
    return sizes


@PROPS
@given(st.data())
def test_every_k_floor_holds(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(["parking", "scenic", "charging", "charging_sessions"]))
    records = data.draw(BATCHES[feed])
    out = ENGINE.apply_all(feed, records)
    if feed == "parking":
        for view, raw in zip(out["public"], records, strict=True):
            assert ("free" in view) == (raw["capacity"] >= 20)
            if "free" not in view:
                assert view["free_band"] == ("0" if raw["free"] == 0 else "1-5" if raw["free"] <= 5 else ">5")
    elif feed == "scenic":
        for tier, k in (("registered", 5), ("public", 10)):
            for view, raw in zip(out[tier], records, strict=True):
                if isinstance(view["count"], int):
                    assert raw["count"] >= k
                else:
                    assert view["count"] == f"<{k}"
        for view, raw in zip(out["registered"], records, strict=True):
            for zone, raw_zone in zip(view.get("zones", []), raw.get("zones", []), strict=True):
                assert isinstance(zone["count"], str) or raw_zone["count"] >= 10
    elif feed == "charging":
        public_raw = [r for r in records if r.get("public", True)]  # to_dict omits defaults
        assert len(out["public"]) == len(public_raw)
        for view, raw in zip(out["public"], public_raw, strict=True):
            n = len(raw.get("connectors", []))
            assert ("connectors" in view) == (n >= 4)
            assert sum(s["total"] for s in view.get("connector_summary", {}).values()) == n
    else:
        sizes = _session_groups(records)
        assert len(out["licensed"]) == sum(n for n in sizes.values() if n >= 5)
        for tier, k in (("registered", 5), ("public", 10)):
            for view in out[tier]:
                true = sizes[(view["station_id"], view["window_start"])]
                if isinstance(view["sessions"], int):
                    assert true >= k
                    assert abs(view["sessions"] - true) <= 4
                else:
                    assert "energy_kwh" not in view


@PROPS
@given(st.data())
def test_same_input_same_output(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(FEEDS))
    records = data.draw(BATCHES[feed])
    before = copy.deepcopy(records)
    first = ENGINE.apply_all(feed, records)
    again = PolicyEngine(secret=b"property-test-secret").apply_all(feed, copy.deepcopy(records))
    assert first == again
    assert records == before  # the input is not modified
    for tier in TIERS:
        assert ENGINE.apply(feed, tier, records, crs=ENGINE.allowed_crs(feed, tier)[0]) == first[tier]


@PROPS
@given(st.data())
def test_aggregate_k_floors_and_exactness(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(["agg_parking", "agg_charging", "agg_scenic"]))
    records = data.draw(BATCHES[feed])
    out = ENGINE.apply_all(feed, records)
    if feed == "agg_parking":
        for view, raw in zip(out["public"], records, strict=True):
            # The parking feed's floor on the group's capacity; an occupancy would give the count away.
            assert ("free" in view) == (raw["capacity"] >= 20)
            if "free" not in view:
                assert view["free_band"] == ("0" if raw["free"] == 0 else "1-5" if raw["free"] <= 5 else ">5")
                assert "occupancy_pct" not in view
    elif feed == "agg_charging":
        for view, raw in zip(out["public"], records, strict=True):
            assert ("available" in view) == (raw["connectors"] >= 4)
            assert "out_of_service" not in view
        assert all("out_of_service" not in v for v in out["registered"])
    else:
        # Rounding to 5, then to 10 from the tier above: at most 2, then 2 + 5 away from the true count.
        for tier, k, spread in (("registered", 5, 2), ("public", 10, 7)):
            for view, raw in zip(out[tier], records, strict=True):
                if isinstance(view["count"], int):
                    assert raw["count"] >= k and abs(view["count"] - raw["count"]) <= spread
                else:
                    assert view["count"] == f"<{k}"
                # Below licensed no exact occupancy or change that would undo the rounding.
                assert "occupancy_pct" not in view and "change_15min" not in view
        for view, raw in zip(out["licensed"], records, strict=True):
            assert view["count"] == raw["count"]


@PROPS
@given(st.data())
def test_views_by_tier_match_apply_all(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(FEEDS))
    records = data.draw(BATCHES[feed])
    aligned = ENGINE.views_by_tier(feed, records)
    if feed == "charging_sessions":
        assert aligned is None  # aggregated below licensed: no per-record alignment
        return
    assert aligned is not None
    every = ENGINE.apply_all(feed, records)
    for tier in TIERS:
        assert len(aligned[tier]) == len(records)
        assert [v for v in aligned[tier] if v is not None] == every[tier]


@PROPS
@given(st.data())
def test_encoded_views_are_the_views_bytes(data: st.DataObject) -> None:
    feed = data.draw(st.sampled_from(FEEDS))
    records = data.draw(BATCHES[feed])
    encoded = ENGINE.encoded_by_tier(feed, records)
    views = ENGINE.views_by_tier(feed, records)
    if views is None:
        assert encoded is None
        return
    assert encoded is not None
    for tier in TIERS:
        expected = [None if v is None else (v.get("id"), v.get("observed_at"), encode_value(v)) for v in views[tier]]
        assert encoded[tier] == expected
