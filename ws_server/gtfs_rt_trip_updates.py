"""``/gtfs-rt/trip-updates.pb``: GTFS-Realtime TripUpdates rebuilt from a tier's ``arrivals`` state.

The feed keeps one record per (trip run, stop); a consumer such as OpenTripPlanner wants one TripUpdate per
run with its stops in order. A run is (trip_id, start_date, start_time), as the upstream descriptor had it;
its stops are sorted by stop_sequence. Stale predictions (their vehicle stopped reporting) are left out.
Served like the positions feed (``ws_server.gtfs_rt_feed``): per tier, with ETag/304, gzip and ``?format=json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.transit import gtfs_realtime_pb2

from .gtfs_rt_feed import EntityEncoder
from .protocol.state import Entry

PATH = "/gtfs-rt/trip-updates.pb"
FEEDS = ("arrivals",)
_RunKey = tuple[str, str, str]


def _run_key(record: dict[str, Any]) -> _RunKey:
    return str(record["trip_id"]), str(record.get("start_date") or ""), str(record.get("start_time") or "")


def _stop_order(record: dict[str, Any]) -> tuple[bool, int, int]:
    sequence = record.get("stop_sequence")
    return sequence is None, sequence or 0, record.get("arrival_at") or record.get("departure_at") or 0


def _set_event(event: gtfs_realtime_pb2.TripUpdate.StopTimeEvent, at_ms: object, delay_s: object) -> None:
    if isinstance(at_ms, int):
        event.time = at_ms // 1000
    if isinstance(delay_s, int):
        event.delay = delay_s


def trip_update_entities(entries: Iterable[Entry], now_ms: int) -> list[bytes]:
    """The serialised ``FeedEntity`` (TripUpdate) of each run, in a stable order (unchanged predictions,
    unchanged bytes: what the feed's entity tag is computed from)."""
    runs: dict[_RunKey, list[dict[str, Any]]] = {}
    for entry in entries:
        record = entry.record
        if entry.stale or not record.get("trip_id") or not record.get("stop_id"):
            continue
        runs.setdefault(_run_key(record), []).append(record)
    return [_entity(key, stops).SerializeToString() for key, stops in sorted(runs.items())]


def _entity(run: _RunKey, stops: list[dict[str, Any]]) -> gtfs_realtime_pb2.FeedEntity:
    trip_id, start_date, start_time = run
    skipped = gtfs_realtime_pb2.TripUpdate.StopTimeUpdate.SKIPPED
    stops.sort(key=_stop_order)
    first = stops[0]
    entity = gtfs_realtime_pb2.FeedEntity()
    entity.id = "/".join(run)
    tu = entity.trip_update
    tu.trip.trip_id = trip_id
    if start_date:
        tu.trip.start_date = start_date
    if start_time:
        tu.trip.start_time = start_time
    if first.get("route_id"):
        tu.trip.route_id = str(first["route_id"])
    if first.get("direction_id") in (0, 1):
        tu.trip.direction_id = int(first["direction_id"])
    vehicle_id = first.get("vehicle_id")
    if vehicle_id:
        tu.vehicle.id = str(vehicle_id)
    if first.get("label"):
        tu.vehicle.label = str(first["label"])
    tu.timestamp = max(int(r["observed_at"]) for r in stops) // 1000
    for record in stops:
        stu = tu.stop_time_update.add()
        if isinstance(record.get("stop_sequence"), int):
            stu.stop_sequence = record["stop_sequence"]
        stu.stop_id = str(record["stop_id"])
        if record.get("skipped"):
            stu.schedule_relationship = skipped
            continue
        if record.get("arrival_at") is not None or record.get("arrival_delay_s") is not None:
            _set_event(stu.arrival, record.get("arrival_at"), record.get("arrival_delay_s"))
        if record.get("departure_at") is not None or record.get("departure_delay_s") is not None:
            _set_event(stu.departure, record.get("departure_at"), record.get("departure_delay_s"))
    return entity


def new_encoder() -> EntityEncoder:
    """What ``FeedRenderings`` builds per tier: trip updates keep nothing between renderings."""
    return trip_update_entities
