"""Predicted arrivals: the simulator's GTFS-Realtime TripUpdates name trips, stops and stop sequences of the
static feed we publish and come true as the vehicles move; the ``gtfs-rt-arrivals`` format keeps every stop's
prediction and dead-letters a bad trip update alone, with its own bytes."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from google.transit import gtfs_realtime_pb2

from adapters.formats import parse_with
from adapters.simulators.beijing import utc_from_local
from adapters.simulators.city import SimulatedCity
from adapters.simulators.faults import Fault
from adapters.simulators.gtfs_export import build_tables
from schemas import StopArrival

SEED = 2019
MOMENTS = [
    utc_from_local(2026, 11, 27, 8, 10),
    utc_from_local(2026, 11, 28, 2, 15),
    utc_from_local(2026, 11, 28, 18, 0),
]
FEEDS = (("bus_trip_updates", "bus"), ("metro_trip_updates", "metro"))


@pytest.fixture(scope="module")
def city() -> SimulatedCity:
    return SimulatedCity(seed=SEED, start_ms=MOMENTS[0] * 1000, buses=400, lots=10, connectors=10)


def _decode(body: bytes) -> gtfs_realtime_pb2.FeedMessage:
    message = gtfs_realtime_pb2.FeedMessage()
    message.ParseFromString(body)
    return message


def test_trip_updates_match_the_static_feed(city: SimulatedCity) -> None:
    tables = build_tables(city.bus, city.metro, date(2026, 11, 23))
    trips = {row[2]: row for row in tables.files["trips.txt"][1]}  # trip_id → (route_id, ..., direction_id)
    stop_at = {(row[0], int(row[4])): row[3] for row in tables.files["stop_times.txt"][1]}
    for t_s in MOMENTS:
        for name, _mode in FEEDS:
            message = _decode(city.render(name, t_s))
            assert message.header.gtfs_realtime_version == "2.0"
            if t_s == MOMENTS[1]:  # 02:15: the metro is closed, and a small fleet has no night line
                assert name == "bus_trip_updates" or len(message.entity) == 0
            else:
                assert len(message.entity) > 20, (name, t_s)
            for entity in message.entity:
                tu = entity.trip_update
                trip = trips[tu.trip.trip_id]
                assert trip[0] == tu.trip.route_id and trip[4] == str(tu.trip.direction_id)
                assert len(tu.trip.start_date) == 8 and len(tu.trip.start_time) == 8
                times = []
                for stu in tu.stop_time_update:
                    assert stop_at[(tu.trip.trip_id, stu.stop_sequence)] == stu.stop_id
                    if stu.HasField("arrival"):
                        times.append(stu.arrival.time)
                    times.append(stu.departure.time)
                assert times == sorted(times) and times[-1] >= tu.timestamp


def test_predictions_follow_the_vehicles(city: SimulatedCity) -> None:
    t_s = MOMENTS[0]
    gps = {v["obuId"]: v for v in orjson.loads(city.render("bus", t_s))["data"]}
    later = {v["obuId"]: v for v in orjson.loads(city.render("bus", t_s + 600))["data"]}
    first = _decode(city.render("bus_trip_updates", t_s))
    again = _decode(city.render("bus_trip_updates", t_s + 30))
    start_of = {e.id: (e.trip_update.trip.trip_id, e.trip_update.trip.start_time) for e in again.entity}
    checked = 0
    for entity in first.entity:
        tu = entity.trip_update
        bus = gps[entity.id]
        # The first stop predicted is the one the bus reports heading for (or standing at).
        assert tu.stop_time_update[0].stop_id == bus["nextStationId"]
        # The run keeps its start time from poll to poll (it names the run).
        if entity.id in start_of and start_of[entity.id][0] == tu.trip.trip_id:
            assert start_of[entity.id][1] == tu.trip.start_time
        # A stop predicted to be left within 10 minutes has been left 10 minutes on.
        left = [s for s in tu.stop_time_update if s.departure.time < t_s + 570]
        if left and entity.id in later and later[entity.id]["tripId"] == tu.trip.trip_id:
            index = int(later[entity.id]["nextStationId"].rsplit("-", 1)[1])
            assert index + 1 > left[-1].stop_sequence, entity.id
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(("name", "mode"), FEEDS)
def test_every_stop_prediction_is_a_record(city: SimulatedCity, name: str, mode: str) -> None:
    t_s = MOMENTS[0]
    message = _decode(city.render(name, t_s))
    parsed = parse_with("gtfs-rt-arrivals", city.render(name, t_s), source="sim", received_at_ms=t_s * 1000, mode=mode)
    assert parsed.rejects == []
    expected = sum(
        1
        for e in message.entity
        for s in e.trip_update.stop_time_update
        if s.departure.time >= (e.trip_update.timestamp or message.header.timestamp)
    )
    assert len(parsed.records) == expected > 100
    records = [r for r in parsed.records if isinstance(r, StopArrival)]
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids) == len(parsed.records)  # one entity per (run, stop)
    record = records[0]
    entity = message.entity[0]
    stu = entity.trip_update.stop_time_update[0]
    assert record.stop_id == stu.stop_id and record.trip_id == entity.trip_update.trip.trip_id
    assert record.departure_at == stu.departure.time * 1000 and record.mode == mode


@pytest.mark.parametrize(("name", "mode"), FEEDS)
def test_a_bad_trip_update_is_one_dead_letter_with_its_bytes(city: SimulatedCity, name: str, mode: str) -> None:
    t_s = MOMENTS[0]
    clean = parse_with("gtfs-rt-arrivals", city.render(name, t_s), source="sim", received_at_ms=0, mode=mode)
    rendered = city.feeds[name].render(t_s, Fault("garbage", rate=0.05), 99)
    parsed = parse_with("gtfs-rt-arrivals", rendered.body, source="sim", received_at_ms=0, mode=mode)
    assert len(parsed.rejects) == rendered.injected["garbage_records"] >= 3
    assert {r.id for r in parsed.records} == {r.id for r in clean.records}  # every good entity kept whole
    for reject in parsed.rejects:
        assert reject.feed == "arrivals" and reject.locator is not None and "-x'" in reject.locator
        entity = gtfs_realtime_pb2.FeedEntity()
        entity.ParseFromString(reject.original)
        assert entity.id.endswith("-x") and entity.HasField("trip_update")
    reasons = " | ".join(r.reason for r in parsed.rejects)
    assert "no trip_id" in reasons and "departure_at is before arrival_at" in reasons
    whole = parse_with("gtfs-rt-arrivals", b"\x00not protobuf", source="sim", received_at_ms=0, mode=mode)
    assert whole.records == [] and len(whole.rejects) == 1 and whole.rejects[0].feed == "arrivals"


def test_the_documented_example_parses_as_documented() -> None:
    import json
    import re
    from pathlib import Path

    from google.protobuf import json_format

    text = (Path(__file__).resolve().parent.parent / "docs" / "sources.md").read_text(encoding="utf-8")
    section = text.split("## `gtfs-rt-arrivals`", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block
    message = json_format.ParseDict(json.loads(block.group(1)), gtfs_realtime_pb2.FeedMessage())
    parsed = parse_with("gtfs-rt-arrivals", message.SerializeToString(), source="doc", received_at_ms=0)
    assert parsed.rejects == []
    assert [(r.id, r.stop_id, r.arrival_at, r.departure_at) for r in parsed.records if isinstance(r, StopArrival)] == [
        ("1-0/20261127/07:22:17/16", "1-0-15", 1795738252000, 1795738302000),
        ("1-0/20261127/07:22:17/17", "1-0-16", 1795738398000, 1795738431000),
    ]
