"""The aggregate feeds: their content without a broker, and published through the policy on the real stack."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from kafka_admin import ensure_topics
from schemas import ParkingLot, ScenicCount, raw_topic, to_dict
from schemas.aggregates import validate_aggregate
from streams.config import StreamConfig
from streams.logic.aggregation import (
    AGG_TTL_MS,
    REFRESH_MS,
    Aggregator,
    NearScenic,
    Place,
    ScenicHistory,
    charging_aggregates,
    crowding_level,
    parking_aggregates,
    scenic_aggregates,
    trend,
    vehicle_aggregates,
)
from streams.logic.enrichment import Enricher
from streams.stages.worker import Pipeline, worker_topics

from .streams_support import (
    TopicReader,
    bus,
    decode_snapshot,
    now_ms,
    produce,
    short_policy_engine,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
)

T0 = 1_780_000_000_000
MIN = 60_000
YUYUAN = Place("SCN-YUYUAN", "Yu Garden", 121.4921, 31.2272, 300.0, 5000)


def _bus(entity: str, route: str, district: str | None, **kw: Any) -> dict[str, Any]:
    rec = to_dict(bus(entity, T0, **kw))
    rec["route_id"] = route
    if district:
        rec["district"] = district
    return rec


def test_vehicles_per_route_and_district_count_only_live_vehicles():
    recs = [
        _bus("a", "71", "310101"),
        _bus("b", "71", "310104"),
        _bus("c", "49", "310101"),
        dict(_bus("d", "49", "310101"), state="stale"),  # outlived its expiry: not in service
        _bus("e", "49", None, expires_in_ms=1),  # expired, no marker yet
    ]
    out = {a["id"]: a for a in vehicle_aggregates("bus", recs, T0 + 1000)}
    assert {k: v["vehicles"] for k, v in out.items()} == {
        "bus:route:49": 1,
        "bus:route:71": 2,
        "bus:district:310101": 2,
        "bus:district:310104": 1,
    }
    for agg in out.values():
        validate_aggregate("agg_vehicles", agg)
        assert agg["expires_at"] == T0 + 1000 + AGG_TTL_MS


def _lot(lot_id: str, lng: float, lat: float, capacity: int | None, free: int, **kw: Any) -> dict[str, Any]:
    rec = ParkingLot(
        id=lot_id,
        source="t",
        observed_at=T0,
        expires_at=T0 + 10 * MIN,
        lng=lng,
        lat=lat,
        capacity=capacity,
        free=free,
        **kw,
    )
    return to_dict(rec)


def test_parking_per_district_and_near_scenic_areas():
    near = NearScenic([YUYUAN])
    lots = [
        _lot("P1", 121.4930, 31.2280, 200, 50, district="310101"),  # beside Yu Garden
        _lot("P2", 121.5000, 31.2300, 100, 100, district="310101"),  # ~800 m away: near
        _lot("P3", 121.4000, 31.1500, 40, 4, district="310104"),  # far away
        _lot("P4", 121.4925, 31.2275, 30, 0, district="310101", status="closed"),  # closed: not counted
        _lot("P5", 121.4000, 31.1500, None, 7, district="310104"),  # no capacity: free counts, occupancy not
    ]
    out = {a["id"]: a for a in parking_aggregates(lots, T0 + 1000, near, {"SCN-YUYUAN": "Yu Garden"})}
    d1 = out["district:310101"]
    assert (d1["lots"], d1["capacity"], d1["free"], d1["occupancy_pct"]) == (2, 300, 150, 50.0)
    d2 = out["district:310104"]
    assert (d2["lots"], d2["capacity"], d2["free"], d2["occupancy_pct"]) == (2, 40, 11, 90.0)
    scenic = out["scenic:SCN-YUYUAN"]
    assert (scenic["lots"], scenic["free"], scenic["name"]) == (2, 150, "Yu Garden")
    for agg in out.values():
        validate_aggregate("agg_parking", agg)


def test_charging_counts_public_connectors_per_district_and_type():
    def station(sid: str, public: bool, statuses: list[tuple[str, str]]) -> dict[str, Any]:
        conns = [{"id": f"c{i}", "type": t, "status": s} for i, (t, s) in enumerate(statuses)]
        return {
            "id": sid,
            "source": "t",
            "observed_at": T0,
            "expires_at": T0 + MIN,
            "public": public,
            "district": "310115",
            "connectors": conns,
        }

    recs = [
        station("S1", True, [("GB_T_DC", "AVAILABLE"), ("GB_T_DC", "CHARGING"), ("GB_T_AC", "FAULTED")]),
        station("S2", True, [("GB_T_DC", "AVAILABLE")]),
        station("HOME", False, [("GB_T_AC", "AVAILABLE")]),  # a home pile never shows up in aggregates
    ]
    out = {a["id"]: a for a in charging_aggregates(recs, T0 + 1000)}
    d = out["district:310115"]
    assert (d["stations"], d["connectors"], d["available"], d["out_of_service"]) == (2, 4, 2, 1)
    dc, ac = out["type:GB_T_DC"], out["type:GB_T_AC"]
    assert (dc["stations"], dc["connectors"], dc["available"]) == (2, 3, 2)
    assert (ac["stations"], ac["connectors"], ac["available"], ac["out_of_service"]) == (1, 1, 0, 1)


def test_crowding_levels_and_trend_thresholds():
    assert [crowding_level(c, 100) for c in (0, 49, 50, 74, 75, 89, 90, 130)] == [
        "comfortable",
        "comfortable",
        "busy",
        "busy",
        "crowded",
        "crowded",
        "saturated",
        "saturated",
    ]
    assert crowding_level(10, None) is None
    assert trend(100, None) == (None, None)
    assert trend(1000, 940) == ("rising", 60)  # 5 % of 940 = 47
    assert trend(1000, 960) == ("steady", 40)
    assert trend(5, 20) == ("falling", -15)  # at least 10 visitors
    assert trend(15, 20) == ("steady", -5)


def _scenic(count: int, t: int, capacity: int | None = None, area: str = "SCN-YUYUAN") -> dict[str, Any]:
    rec = ScenicCount(
        id=area,
        source="t",
        observed_at=t,
        expires_at=t + 10 * MIN,
        lng=121.4921,
        lat=31.2272,
        count=count,
        capacity=capacity,
    )
    return to_dict(rec)


def test_scenic_trend_needs_the_count_fifteen_minutes_earlier():
    history = ScenicHistory()
    places = {"SCN-YUYUAN": YUYUAN}
    seen = []
    for minute in range(0, 21):
        t = T0 + minute * MIN
        recs, _ = scenic_aggregates([_scenic(1000 + 40 * minute, t)], t + 500, history, places)
        seen.append(recs[0])
    assert "trend" not in seen[14]  # no sample 15 minutes back yet
    assert seen[15]["trend"] == "rising" and seen[15]["change_15min"] == 600
    last = seen[-1]
    assert last["capacity"] == 5000 and last["crowding"] == "comfortable"  # capacity from the geo data
    assert last["occupancy_pct"] == 36.0
    validate_aggregate("agg_scenic", last)
    # The history is bounded to ~20 minutes.
    assert len(history.samples["SCN-YUYUAN"]) <= 21


def test_aggregator_publishes_changes_refreshes_and_removals():
    agg = Aggregator(NearScenic([]))
    recs = [_bus("a", "71", "310101"), _bus("b", "49", "310101")]
    computed, _ = agg.compute_source("bus", recs, T0)
    first = agg.releases("bus", computed, T0)
    assert len(first["agg_vehicles"]) == 3  # two routes, one district
    agg.emitted_ok("bus", first, T0)
    # Nothing changed a few seconds later: nothing to publish.
    computed, _ = agg.compute_source("bus", recs, T0 + 5000)
    assert agg.releases("bus", computed, T0 + 5000) == {}
    # Bus b goes stale: route 49 is removed, the district count changes.
    recs[1] = dict(recs[1], state="stale")
    computed, _ = agg.compute_source("bus", recs, T0 + 10_000)
    out = {a["id"]: a for a in agg.releases("bus", computed, T0 + 10_000)["agg_vehicles"]}
    assert out["bus:route:49"]["state"] == "removed" and out["bus:district:310101"]["vehicles"] == 1
    agg.emitted_ok("bus", {"agg_vehicles": list(out.values())}, T0 + 10_000)
    # Unchanged aggregates are re-published once a minute so they never expire while true.
    computed, _ = agg.compute_source("bus", recs, T0 + 10_000 + REFRESH_MS)
    again = agg.releases("bus", computed, T0 + 10_000 + REFRESH_MS)["agg_vehicles"]
    assert {a["id"] for a in again} == {"bus:route:71", "bus:district:310101"}


def test_a_new_owner_adopts_published_aggregates_and_removes_vanished_ones():
    before = Aggregator(NearScenic([]))
    computed, _ = before.compute_source("bus", [_bus("a", "71", "310101")], T0)
    published = before.releases("bus", computed, T0)
    after = Aggregator(NearScenic([]))  # another worker, after a restart or a rebalance
    after.adopt("bus", "agg_vehicles", published["agg_vehicles"])
    computed, _ = after.compute_source("bus", [_bus("z", "99", "310101")], T0 + 5000)
    out = {a["id"]: a for a in after.releases("bus", computed, T0 + 5000)["agg_vehicles"]}
    assert out["bus:route:71"]["state"] == "removed"
    assert out["bus:route:99"]["vehicles"] == 1 and out["bus:district:310101"]["vehicles"] == 1


def test_policy_applies_to_aggregates():
    engine = short_policy_engine()
    small, big = _scenic(7, T0, capacity=100, area="SCN-A"), _scenic(3712, T0, capacity=5000, area="SCN-B")
    recs, _ = scenic_aggregates([small, big], T0, ScenicHistory())
    public = engine.apply("agg_scenic", "public", recs)
    assert public[0]["count"] == "<10" and public[1]["count"] == 3710
    assert [v["crowding"] for v in public] == ["comfortable", "busy"]
    assert all("occupancy_pct" not in v and "change_15min" not in v for v in public)
    licensed = engine.apply("agg_scenic", "licensed", recs)
    assert licensed[1]["count"] == 3712 and licensed[1]["occupancy_pct"] == 74.2


# ------------------------------------------------------------------------------------- on the real stack


def _config(kafka_bootstrap: str, redis_url: str, unique_name: Any, prefix: str) -> StreamConfig:
    return StreamConfig(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        partitions=2,
        app_id=unique_name("app"),
        topic_prefix=prefix,
        redis_prefix=unique_name("r"),
        feeds=("bus", "scenic"),
        poll_timeout_ms=50,
        stale_scan_interval_s=0.2,
        aggregate_interval_s=0.3,
    )


def _latest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in rows:
        out[v["id"]] = v
    return out


@pytest.mark.stack
async def test_aggregates_flow_through_the_policy_and_survive_a_restart(
    kafka_bootstrap, redis_url, unique_name, topic_prefix
):
    config = _config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    engine = short_policy_engine()
    t0 = now_ms()
    buses = [bus(f"agg-{i}", t0 - 200, 121.4737 + i * 0.001, 31.2304) for i in range(3)]  # route 71, Huangpu
    visitors = ScenicCount(
        id="SCN-YUYUAN",
        source="t",
        observed_at=t0,
        expires_at=t0 + 600_000,
        lng=121.4921,
        lat=31.2272,
        count=3712,
        capacity=5000,
    )
    topic = {
        (t, f): config.naming.tier_topic(t, f) for t in ("operator", "public") for f in ("agg_vehicles", "agg_scenic")
    }
    await ensure_topics(kafka_bootstrap, 2, worker_topics(config.naming, config.feeds))
    async with TopicReader(kafka_bootstrap, list(topic.values())) as reader:
        async with Pipeline(config, engine=engine, enricher=Enricher.from_geo()):
            await produce(kafka_bootstrap, config.topic(raw_topic("bus")), buses)
            await produce(kafka_bootstrap, config.topic(raw_topic("scenic")), [visitors])
            await reader.wait_for(topic[("operator", "agg_vehicles")], 2, timeout_s=20)
            await reader.wait_for(topic[("public", "agg_scenic")], 1, timeout_s=20)
        operator = _latest([v for _, v, _, _, _ in reader.records[topic[("operator", "agg_vehicles")]]])
        assert operator["bus:route:71"]["vehicles"] == 3
        assert operator["bus:district:310101"]["vehicles"] == 3
        (_key, public_scenic, ts, headers, received) = reader.records[topic[("public", "agg_scenic")]][0]
        # The public tier's delay (4 s in the test policy) and rounding apply to the aggregate too.
        assert received >= ts + 4000
        assert public_scenic["count"] == 3710 and public_scenic["crowding"] == "busy"
        assert headers["policy_version"] == engine.policy_version.encode()
        assert "occupancy_pct" not in public_scenic

        # A new worker (restart) recomputes from the state in Redis: one more bus makes four, not one.
        async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher.from_geo()):
            await produce(kafka_bootstrap, config.topic(raw_topic("bus")), [bus("agg-9", now_ms(), 121.4780, 31.2304)])
            for _ in range(100):
                await reader.poll()
                rows = [v for _, v, _, _, _ in reader.records[topic[("operator", "agg_vehicles")]]]
                if _latest(rows)["bus:route:71"]["vehicles"] == 4:
                    break
                await asyncio.sleep(0.1)
    assert _latest(rows)["bus:route:71"]["vehicles"] == 4
    client = aioredis.Redis.from_url(redis_url)
    try:
        snapshot = await client.hgetall(f"{config.redis_prefix}:state:public:agg_vehicles")
    finally:
        await client.aclose()
    assert any(v["id"] == "bus:route:71" for v in decode_snapshot(snapshot.values()))
