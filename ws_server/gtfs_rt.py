"""GTFS-Realtime VehiclePositions from a tier's bus and metro state (FULL_DATASET, protobuf bytes)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from google.transit import gtfs_realtime_pb2

from .protocol.state import Entry

_OCCUPANCY = dict(gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.items())


def vehicle_positions(entries: Iterable[Entry], crs: str, now_ms: int) -> bytes:
    """One FeedMessage of every live vehicle in ``entries``, with points in ``crs``."""
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    feed.header.timestamp = now_ms // 1000
    for entry in entries:
        if entry.stale or math.isnan(entry.x):
            continue
        rec = entry.in_crs(crs)
        entity = feed.entity.add()
        entity.id = entry.id
        vp = entity.vehicle
        vp.position.longitude = float(rec["lng"])
        vp.position.latitude = float(rec["lat"])
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
    data: bytes = feed.SerializeToString()
    return data
