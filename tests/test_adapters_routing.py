"""Where each record goes: its feed's raw topic, the feed told by the record's type (a vehicle's by its mode)."""

from __future__ import annotations

import json

import orjson
import pytest
from google.transit import gtfs_realtime_pb2

from adapters.formats import parse_with
from adapters.runtime.routing import feed_of, record_message
from schemas import FEEDS, Record, raw_topic

from .adapters_helpers import RECEIVED_AT
from .test_adapters_shanghai import documented_example
from .test_ocpi_cdrs import cdr


def one_record_of_each_feed() -> dict[str, Record]:
    records: dict[str, Record] = {}
    for name in ("sh-bus-gps", "sh-parking", "sh-charging", "sh-scenic"):
        data = json.dumps(documented_example(name)).encode()
        records[name] = parse_with(name, data, source="t", received_at_ms=RECEIVED_AT).records[0]
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = RECEIVED_AT // 1000
    vehicle = feed.entity.add(id="m1").vehicle
    vehicle.position.latitude, vehicle.position.longitude = 31.23, 121.47
    metro = parse_with("gtfs-rt-vp", feed.SerializeToString(), source="t", received_at_ms=RECEIVED_AT, mode="metro")
    records["metro"] = metro.records[0]
    update = feed.entity.add(id="t1").trip_update
    update.trip.trip_id = "71-0"
    update.stop_time_update.add(stop_sequence=1, stop_id="71-0-0").arrival.time = RECEIVED_AT // 1000 + 60
    arrivals = parse_with("gtfs-rt-arrivals", feed.SerializeToString(), source="t", received_at_ms=RECEIVED_AT)
    records["arrivals"] = arrivals.records[0]
    sessions = orjson.dumps({"data": [cdr()], "status_code": 1000})
    records["ocpi-cdrs"] = parse_with("ocpi-cdrs", sessions, source="t", received_at_ms=RECEIVED_AT).records[0]
    return records


def test_every_feed_is_routed_to_its_raw_topic():
    routed = {feed_of(record): record_message(record).topic for record in one_record_of_each_feed().values()}
    assert routed == {feed: raw_topic(feed) for feed in FEEDS}


def test_something_that_is_not_a_record_is_refused():
    with pytest.raises(TypeError, match="not a canonical record: dict"):
        feed_of({"id": "x"})  # type: ignore[arg-type]
