"""GTFS-Realtime VehiclePositions from a tier's bus and metro state (FULL_DATASET, protobuf bytes).

The GTFS-Realtime specification gives positions in WGS-84, so every tier's feed is WGS-84. Tiers whose
policy releases only GCJ-02 (public, registered) get their released GCJ-02 point converted back to WGS-84:
the point was already snapped to the tier's grid before the datum shift, so the conversion reveals nothing
finer than what the tier receives anyway. It is rounded to 6 decimals, the precision those tiers are given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from google.transit import gtfs_realtime_pb2

from .protocol.state import Entry

_OCCUPANCY = dict(gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.items())


CONVERTED_DECIMALS = 6


def wgs84_point(entry: Entry) -> tuple[float, float]:
    """The entry's released point in WGS-84 (converted from GCJ-02 when that is what the tier holds)."""
    record = entry.record
    if record.get("crs", "gcj02") == "wgs84":
        return float(record["lng"]), float(record["lat"])
    lng, lat = entry.in_crs("wgs84")["lng"], entry.in_crs("wgs84")["lat"]
    return round(float(lng), CONVERTED_DECIMALS), round(float(lat), CONVERTED_DECIMALS)


def expired(entry: Entry, now_ms: int) -> bool:
    """Past its ``expires_at`` (or marked stale by the stream stage): what it says no longer holds, so a
    consumer must not be shown it, even before the stale marker has reached this node."""
    expires_at = entry.record.get("expires_at")
    return entry.stale or (isinstance(expires_at, int | float) and expires_at <= now_ms)


def vehicle_positions(entries: Iterable[Entry], now_ms: int) -> bytes:
    """One FeedMessage of every live vehicle in ``entries``, serialised (see ``vehicle_positions_message``)."""
    data: bytes = vehicle_positions_message(entries, now_ms).SerializeToString()
    return data


def vehicle_positions_message(entries: Iterable[Entry], now_ms: int) -> gtfs_realtime_pb2.FeedMessage:
    """One FeedMessage (FULL_DATASET) of every vehicle in ``entries`` that is not expired at ``now_ms``, with
    WGS-84 points as GTFS-RT requires. The header's timestamp is ``now_ms``."""
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    feed.header.timestamp = now_ms // 1000
    for entry in sorted(entries, key=lambda e: e.id):  # a stable order: unchanged content, unchanged bytes
        if expired(entry, now_ms) or math.isnan(entry.x):
            continue
        rec = entry.record
        entity = feed.entity.add()
        entity.id = entry.id
        vp = entity.vehicle
        vp.position.longitude, vp.position.latitude = wgs84_point(entry)
        if isinstance(rec.get("bearing"), int | float):
            vp.position.bearing = float(rec["bearing"])
        if isinstance(rec.get("speed_kmh"), int | float):
            vp.position.speed = float(rec["speed_kmh"]) / 3.6  # GTFS-RT wants metres per second
        if isinstance(rec.get("observed_at"), int):
            vp.timestamp = rec["observed_at"] // 1000
        if rec.get("trip_id"):
            vp.trip.trip_id = str(rec["trip_id"])
        if rec.get("route_id"):
            vp.trip.route_id = str(rec["route_id"])
        if rec.get("direction_id") in (0, 1):
            vp.trip.direction_id = int(rec["direction_id"])
        vp.vehicle.id = str(rec.get("vehicle_id") or entry.id)
        if rec.get("label"):
            vp.vehicle.label = str(rec["label"])
        stop = rec.get("stop_id") or rec.get("next_stop_id")
        if stop:
            vp.stop_id = str(stop)
        occupancy = _OCCUPANCY.get(str(rec.get("occupancy_status")))
        if occupancy is not None:
            vp.occupancy_status = occupancy  # type: ignore[assignment]
        pct = rec.get("occupancy_pct")
        if isinstance(pct, int | float):
            vp.occupancy_percentage = round(pct)
    return feed
