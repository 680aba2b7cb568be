"""``sh-bus-gps``: Shanghai bus GPS JSON (GCJ-02 / BD-09 / WGS-84 points, Beijing times)."""

from __future__ import annotations

from schemas import Record

from .common import (
    TTL_MS,
    JsonDict,
    build,
    check_in_shanghai,
    opt_int,
    opt_num,
    opt_str,
    req_str,
)
from .points import ItemPoints
from .sh_envelope import RepeatKey, envelope_parser, item_time_ms

FEED = "bus"


def occupancy_status(load_pct: float) -> str:
    """Map a load rate (% of capacity) onto the GTFS-Realtime occupancy bands."""
    if load_pct <= 0:
        return "EMPTY"
    if load_pct < 30:
        return "MANY_SEATS_AVAILABLE"
    if load_pct < 60:
        return "FEW_SEATS_AVAILABLE"
    if load_pct < 90:
        return "STANDING_ROOM_ONLY"
    if load_pct < 100:
        return "CRUSHED_STANDING_ROOM_ONLY"
    return "FULL"


def _record(item: JsonDict, header_ms: int | None, source: str, points: ItemPoints) -> Record:
    obu_id = req_str(item, "obuId")
    lng, lat = points.of(item)
    check_in_shanghai(lng, lat)
    observed = item_time_ms(item, "gpsTime", header_ms)
    angle = opt_num(item, "angle")
    if angle is not None and angle == 360.0:
        angle = 0.0
    load = opt_num(item, "loadRate")
    return build(
        FEED,
        {
            "id": obu_id,
            "source": source,
            "observed_at": observed,
            "expires_at": observed + TTL_MS[FEED],
            "lng": lng,
            "lat": lat,
            "mode": "bus",
            "route_id": opt_str(item, "lineId"),
            "trip_id": opt_str(item, "tripId"),
            "direction_id": opt_int(item, "direction"),
            "label": opt_str(item, "vehicleNo"),
            "vehicle_id": obu_id,
            "bearing": angle,
            "speed_kmh": opt_num(item, "speed"),
            "occupancy_pct": load,
            "occupancy_status": None if load is None or not 0 <= load <= 100 else occupancy_status(load),
            "next_stop_id": opt_str(item, "nextStationId"),
            "seq": opt_int(item, "seq"),
            "plate": opt_str(item, "plate"),
            "driver_id": opt_str(item, "driverNo"),
        },
    )


# A record is its item's alone once the item has its gpsTime (the expiry is that time plus the feed's TTL).
parse, parse_chunks = envelope_parser(
    FEED, list_key="data", time_key="updateTime", build_record=_record, repeat=RepeatKey("obuId", "gpsTime")
)
