"""``/gtfs-rt/trip-updates.pb`` rebuilt from arrival records, with no broker: one TripUpdate per run, stops in
sequence order, stale predictions left out, and a filter by stop admitting only that stop's records."""

from __future__ import annotations

from typing import Any

import msgspec
from google.transit import gtfs_realtime_pb2

from ws_server import gtfs_rt_trip_updates
from ws_server.gtfs_rt_feed import FeedRenderings
from ws_server.protocol.filters import compile_filter
from ws_server.protocol.messages import Filter
from ws_server.protocol.state import Entry

T0 = 1_795_738_190_000


def arrival(seq: int, start: str = "07:22:17", **extra: Any) -> dict[str, Any]:
    record = {
        "id": f"1-0/20261127/{start}/{seq}",
        "source": "test",
        "observed_at": T0,
        "expires_at": T0 + 120_000,
        "mode": "bus",
        "trip_id": "1-0",
        "start_date": "20261127",
        "start_time": start,
        "route_id": "1",
        "direction_id": 0,
        "stop_id": f"1-0-{seq - 1}",
        "stop_sequence": seq,
        "arrival_at": T0 + seq * 60_000,
        "departure_at": T0 + seq * 60_000 + 20_000,
        "label": "01-0000",
    }
    return {**record, **extra}


def entry(record: dict[str, Any]) -> Entry:
    return Entry(record["id"], msgspec.msgpack.encode(record), record)


def test_one_trip_update_per_run_with_its_live_stops_in_order() -> None:
    records = [arrival(17), arrival(16), arrival(18, state="stale"), arrival(5, start="07:40:00")]
    message = gtfs_realtime_pb2.FeedMessage.FromString(
        FeedRenderings(gtfs_rt_trip_updates.new_encoder).render("public", [entry(r) for r in records], T0).body
    )
    assert message.header.gtfs_realtime_version == "2.0" and message.header.timestamp == T0 // 1000
    runs = {e.id: e.trip_update for e in message.entity}
    assert sorted(runs) == ["1-0/20261127/07:22:17", "1-0/20261127/07:40:00"]
    first = runs["1-0/20261127/07:22:17"]
    assert (first.trip.trip_id, first.trip.route_id, first.trip.start_time) == ("1-0", "1", "07:22:17")
    assert [(s.stop_sequence, s.stop_id) for s in first.stop_time_update] == [(16, "1-0-15"), (17, "1-0-16")]
    assert first.stop_time_update[0].arrival.time == (T0 + 16 * 60_000) // 1000
    assert first.stop_time_update[0].departure.time == (T0 + 16 * 60_000 + 20_000) // 1000


def test_a_stop_filter_admits_only_that_stops_records() -> None:
    compiled = compile_filter(Filter(stops=["1-0-15"], routes=["1"]), "gcj02", lambda _name: None)
    assert compiled.admits("a", "1", "1-0-15")
    assert not compiled.admits("b", "1", "1-0-16")
    assert not compiled.admits("c", "2", "1-0-15")
    assert compiled.key != compile_filter(Filter(routes=["1"]), "gcj02", lambda _name: None).key
