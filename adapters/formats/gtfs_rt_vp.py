"""``gtfs-rt-vp``: GTFS-Realtime VehiclePositions → vehicle positions (bus or metro, as configured).

Trips missing from the static feed are fine: the static feed only fills in a route or direction the
realtime feed left out.
"""

from __future__ import annotations

from google.transit import gtfs_realtime_pb2

from schemas import Record

from .common import DEFAULT_TTL_MS, ItemError, build, check_in_shanghai, never_raises
from .gtfs_rt_common import check_mode, coordinate, decode_feed, entity_bytes
from .gtfs_static import GtfsStatic
from .result import ParseResult

FEED = "bus"
_OCCUPANCY = gtfs_realtime_pb2.VehiclePosition.OccupancyStatus


def vehicle_record(
    entity: gtfs_realtime_pb2.FeedEntity,
    header_ts: int,
    *,
    source: str,
    mode: str,
    static: GtfsStatic | None,
    shanghai: bool,
) -> Record:
    vp = entity.vehicle
    if not vp.HasField("position"):
        raise ItemError("vehicle has no position")
    lng, lat = coordinate(vp.position.longitude), coordinate(vp.position.latitude)
    if shanghai:
        check_in_shanghai(lng, lat)
    seconds = vp.timestamp or header_ts
    if not seconds:
        raise ItemError("neither the vehicle nor the feed header has a timestamp")
    observed = seconds * 1000
    trip = vp.trip
    trip_id = trip.trip_id or None
    route_id = trip.route_id or None
    direction = trip.direction_id if trip.HasField("direction_id") else None
    known = static.trips.get(trip_id) if static is not None and trip_id else None
    if known is not None:
        route_id = route_id or known.route_id
        direction = direction if direction is not None else known.direction_id
    descriptor = vp.vehicle
    vehicle_id = descriptor.id or None
    bearing = None
    if vp.position.HasField("bearing"):
        bearing = float(vp.position.bearing) % 360.0
    speed = vp.position.speed * 3.6 if vp.position.HasField("speed") else None  # m/s → km/h
    occupancy = _OCCUPANCY.Name(vp.occupancy_status) if vp.HasField("occupancy_status") else None
    # The spec allows a percentage above 100 for crush loads; the canonical field is capped at 100.
    percent = min(float(vp.occupancy_percentage), 100.0) if vp.HasField("occupancy_percentage") else None
    return build(
        mode,
        {
            "id": vehicle_id or entity.id,
            "source": source,
            "observed_at": observed,
            "expires_at": observed + DEFAULT_TTL_MS[mode],
            "lng": lng,
            "lat": lat,
            "mode": mode,
            "route_id": route_id,
            "trip_id": trip_id,
            "direction_id": direction,
            "label": descriptor.label or None,
            "vehicle_id": vehicle_id,
            "bearing": bearing,
            "speed_kmh": round(speed, 2) if speed is not None else None,
            "occupancy_status": occupancy,
            "occupancy_pct": percent,
            "stop_id": vp.stop_id or None,
            "plate": descriptor.license_plate or None,
        },
    )


@never_raises(FEED)
def parse(
    data: bytes,
    *,
    source: str,
    received_at_ms: int,
    mode: str = "bus",
    static: GtfsStatic | None = None,
    shanghai: bool = False,
) -> ParseResult:
    result = ParseResult()
    try:
        feed = check_mode(mode)
        message = decode_feed(data)
    except ItemError as err:
        result.reject(
            data,
            source=source,
            feed=FEED if mode not in ("bus", "metro") else mode,
            reason=str(err),
            received_at_ms=received_at_ms,
        )
        return result
    header_ts = message.header.timestamp
    for index, entity in enumerate(message.entity):
        if entity.is_deleted or not entity.HasField("vehicle"):
            continue  # deletions and other entity kinds (trip updates, alerts) are not positions
        try:
            record = vehicle_record(entity, header_ts, source=source, mode=feed, static=static, shanghai=shanghai)
        except ItemError as err:
            result.reject(
                entity_bytes(entity),
                source=source,
                feed=feed,
                reason=str(err),
                received_at_ms=received_at_ms,
                locator=f"entity[{index}] id={entity.id[:60]!r}",
            )
            continue
        result.records.append(record)
    return result
