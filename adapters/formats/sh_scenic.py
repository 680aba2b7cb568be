"""``sh-scenic``: Shanghai scenic-area visitor counts; locations come from geo's scenic-area data."""

from __future__ import annotations

from geo.scenic import scenic_areas
from schemas import Record

from .common import (
    ItemError,
    JsonDict,
    build,
    opt_int,
    opt_str,
    req_int,
    req_str,
    require_dict,
    require_list,
    valid_until,
)
from .points import ItemPoints
from .sh_envelope import envelope_parser, item_time_ms

FEED = "scenic"


def _zone(raw: object, where: str) -> JsonDict:
    zone = require_dict(raw, where)
    out: JsonDict = {"id": req_str(zone, "zoneId"), "count": req_int(zone, "num"), "name": opt_str(zone, "zoneName")}
    return {k: v for k, v in out.items() if v is not None}


def _record(item: JsonDict, header_ms: int | None, source: str, points: ItemPoints) -> Record:
    code = req_str(item, "code")
    area = scenic_areas().get(code)
    if area is None:
        raise ItemError(f"unknown scenic area code {code[:60]!r}")
    observed = item_time_ms(item, "time", header_ms)
    zones = item.get("zones")
    capacity = opt_int(item, "maxCapacity")
    return build(
        FEED,
        {
            "id": code,
            "source": source,
            "observed_at": observed,
            "expires_at": valid_until(FEED, observed, header_ms),
            "lng": area.lng,
            "lat": area.lat,
            "name": opt_str(item, "name") or area.name_zh or area.name_en or None,
            "count": req_int(item, "num"),
            "capacity": capacity if capacity is not None else area.max_capacity,
            "zones": None
            if zones is None
            else [_zone(z, f"zones[{i}]") for i, z in enumerate(require_list(zones, "zones"))],
            "seq": opt_int(item, "seq"),
        },
    )


parse, parse_chunks = envelope_parser(FEED, list_key="list", time_key="time", build_record=_record)
