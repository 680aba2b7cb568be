"""``gtfs-rt-vp``: GTFS-Realtime VehiclePositions → vehicle positions (bus or metro, as configured).

Trips missing from the static feed are fine: the static feed only fills in a route or direction the
realtime feed left out.
"""

from __future__ import annotations

import numpy as np
from google.transit import gtfs_realtime_pb2

from schemas import Record

from .common import TTL_MS, ItemError, build_present, check_in_shanghai, never_raises
from .gtfs_rt_common import coordinate, entity_bytes, entity_locator, open_feed
from .gtfs_static import GtfsStatic
from .items import parse_items
from .result import ParseResult

FEED = "bus"
_OCCUPANCY = gtfs_realtime_pb2.VehiclePosition.OccupancyStatus
_BATCH_FROM = 64
_OCCUPANCY_NAMES: dict[int, str] = {number: name for name, number in _OCCUPANCY.items()}


def vehicle_record(
    entity: gtfs_realtime_pb2.FeedEntity,
    header_ts: int,
    *,
    source: str,
    mode: str,
    static: GtfsStatic | None,
    shanghai: bool,
    lnglat: tuple[float, float] | None = None,
) -> Record:
    """One vehicle as a canonical record. ``lnglat``: the position already converted (``coordinates``)."""
    vp = entity.vehicle
    if not vp.HasField("position"):
        raise ItemError("vehicle has no position")
    # Each attribute step on a upb message builds a wrapper: take every sub-message once.
    position = vp.position
    if lnglat is None:
        lng, lat = coordinate(position.longitude), coordinate(position.latitude)
    else:
        lng, lat = lnglat
    if shanghai:
        check_in_shanghai(lng, lat)
    seconds = vp.timestamp or header_ts
    if not seconds:
        raise ItemError("neither the vehicle nor the feed header has a timestamp")
    observed = seconds * 1000
    trip = vp.trip
    descriptor = vp.vehicle
    vehicle_id = descriptor.id
    # Only fields that are present: the schema's defaults apply to the rest.
    fields: dict[str, object] = {
        "id": vehicle_id or entity.id,
        "source": source,
        "observed_at": observed,
        "expires_at": observed + TTL_MS[mode],
        "lng": lng,
        "lat": lat,
        "mode": mode,
    }
    trip_id = trip.trip_id
    route_id = trip.route_id
    direction = trip.direction_id if trip.HasField("direction_id") else None
    known = static.trips.get(trip_id) if static is not None and trip_id else None
    if known is not None:
        route_id = route_id or known.route_id
        direction = direction if direction is not None else known.direction_id
    if route_id:
        fields["route_id"] = route_id
    if trip_id:
        fields["trip_id"] = trip_id
    if direction is not None:
        fields["direction_id"] = direction
    if descriptor.label:
        fields["label"] = descriptor.label
    if vehicle_id:
        fields["vehicle_id"] = vehicle_id
    if descriptor.license_plate:
        fields["plate"] = descriptor.license_plate
    if position.HasField("bearing"):
        fields["bearing"] = float(position.bearing) % 360.0
    if position.HasField("speed"):
        fields["speed_kmh"] = round(position.speed * 3.6, 2)  # m/s → km/h
    if vp.HasField("occupancy_status"):
        fields["occupancy_status"] = _OCCUPANCY_NAMES.get(vp.occupancy_status) or _OCCUPANCY.Name(vp.occupancy_status)
    if vp.HasField("occupancy_percentage"):
        # The spec allows a percentage above 100 for crush loads; the canonical field is capped at 100.
        fields["occupancy_pct"] = min(float(vp.occupancy_percentage), 100.0)
    if vp.stop_id:
        fields["stop_id"] = vp.stop_id
    return build_present(mode, fields)


def coordinates(entities: list[gtfs_realtime_pb2.FeedEntity]) -> list[tuple[float, float] | None]:
    """Every vehicle's (lng, lat) as the shortest decimals of their float32 values, in one numpy pass
    (per value, ``coordinate`` costs more than the rest of the position); None where there is no position."""
    if len(entities) < _BATCH_FROM:
        return [None] * len(entities)  # the numpy pass has a fixed cost a handful of vehicles never repay
    has = [e.HasField("vehicle") and e.vehicle.HasField("position") for e in entities]
    raw = [
        (e.vehicle.position.longitude, e.vehicle.position.latitude) for e, ok in zip(entities, has, strict=True) if ok
    ]
    if not raw:
        return [None] * len(entities)
    texts = np.asarray(raw, dtype=np.float32).astype(str).tolist()
    converted = iter(texts)
    out: list[tuple[float, float] | None] = []
    for ok in has:
        if ok:
            lng_text, lat_text = next(converted)
            out.append((float(lng_text), float(lat_text)))
        else:
            out.append(None)
    return out


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
    opened = open_feed(data, source=source, received_at_ms=received_at_ms, mode=mode, result=result)
    if opened is None:
        return result
    feed, message = opened
    header_ts = message.header.timestamp
    entities = list(message.entity)
    positions = coordinates(entities)

    def one(entity: gtfs_realtime_pb2.FeedEntity, index: int) -> Record | None:
        if entity.is_deleted or not entity.HasField("vehicle"):
            return None  # deletions and other entity kinds (trip updates, alerts) are not positions
        return vehicle_record(
            entity, header_ts, source=source, mode=feed, static=static, shanghai=shanghai, lnglat=positions[index]
        )

    return parse_items(
        entities,
        one,
        where=entity_locator,
        original=entity_bytes,
        source=source,
        feed=feed,
        received_at_ms=received_at_ms,
        result=result,
    )
