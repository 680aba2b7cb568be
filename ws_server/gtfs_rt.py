"""GTFS-Realtime VehiclePositions from a tier's bus and metro state (FULL_DATASET, protobuf bytes).

The GTFS-Realtime specification gives positions in WGS-84, so every tier's feed is WGS-84. Tiers whose
policy releases only GCJ-02 (public, registered) get their released GCJ-02 point converted back to WGS-84:
the point was already snapped to the tier's grid before the datum shift, so the conversion reveals nothing
finer than what the tier receives anyway. It is rounded to 6 decimals, the precision those tiers are given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from google.transit import gtfs_realtime_pb2

from geo.crs import gcj02_to_wgs84_arrays

from .protocol.state import Entry

_OCCUPANCY = dict(gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.items())


CONVERTED_DECIMALS = 6


def wgs84_points(entries: list[Entry]) -> list[tuple[float, float]]:
    """Each entry's released point in WGS-84 (converted from GCJ-02 when that is what the tier holds). One
    array conversion for all: point by point, a full bus feed took most of a second of the event loop."""
    points = [(float(e.record["lng"]), float(e.record["lat"])) for e in entries]
    gcj = [i for i, e in enumerate(entries) if e.record.get("crs", "gcj02") != "wgs84"]
    if gcj:
        lngs, lats = gcj02_to_wgs84_arrays([points[i][0] for i in gcj], [points[i][1] for i in gcj])
        lngs, lats = np.round(lngs, CONVERTED_DECIMALS), np.round(lats, CONVERTED_DECIMALS)
        for i, lng, lat in zip(gcj, lngs.tolist(), lats.tolist(), strict=True):
            points[i] = (lng, lat)
    return points


def expired(entry: Entry, now_ms: int) -> bool:
    """Past its ``expires_at`` (or marked stale by the stream stage): what it says no longer holds, so a
    consumer must not be shown it, even before the stale marker has reached this node."""
    expires_at = entry.record.get("expires_at")
    return entry.stale or (isinstance(expires_at, int | float) and expires_at <= now_ms)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


_ENTITY_FIELD = b"\x12"  # FeedMessage.entity: field 2, length-delimited


def feed_message_bytes(timestamp_s: int, entities: list[bytes]) -> bytes:
    """A FULL_DATASET FeedMessage from serialised ``FeedEntity`` messages: the header, then each entity as
    field 2 (protobuf messages concatenate, so no entity is parsed or built again)."""
    head = gtfs_realtime_pb2.FeedMessage()
    head.header.gtfs_realtime_version = "2.0"
    head.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    head.header.timestamp = timestamp_s
    parts = [head.SerializeToString()]
    for entity in entities:
        parts += (_ENTITY_FIELD, _varint(len(entity)), entity)
    return b"".join(parts)


class VehicleEntities:
    """Serialised ``FeedEntity`` (VehiclePosition) of each vehicle of one tier, kept until its record
    changes: a full bus feed is ~11,000 entities, and building them all in Python every second took a
    large share of the event loop. Call it with the tier's entries: the live ones, in id order."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[bytes, bytes]] = {}  # entity id → (record bytes, entity bytes)

    def __call__(self, entries: Iterable[Entry], now_ms: int) -> list[bytes]:
        # A stable order: unchanged content, unchanged bytes.
        live = sorted((e for e in entries if not expired(e, now_ms) and not math.isnan(e.x)), key=lambda e: e.id)
        built = self._built
        todo = [e for e in live if (b := built.get(e.id)) is None or b[0] != e.raw]
        for entry, point in zip(todo, wgs84_points(todo), strict=True):
            built[entry.id] = (entry.raw, vehicle_entity(entry, point).SerializeToString())
        self._built = {e.id: built[e.id] for e in live}
        return [built[e.id][1] for e in live]


def vehicle_entity(entry: Entry, point: tuple[float, float]) -> gtfs_realtime_pb2.FeedEntity:
    """The VehiclePosition of one vehicle, at ``point`` (WGS-84)."""
    rec = entry.record
    entity = gtfs_realtime_pb2.FeedEntity()
    entity.id = entry.id
    vp = entity.vehicle
    vp.position.longitude, vp.position.latitude = point
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
    return entity
