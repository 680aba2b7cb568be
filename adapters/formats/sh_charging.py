"""``sh-charging``: Shanghai charging stations with connector status (national interconnection codes)."""

from __future__ import annotations

from schemas import Record

from .common import (
    ItemError,
    JsonDict,
    as_int,
    build,
    check_in_shanghai,
    opt_int,
    opt_num,
    opt_str,
    req_int,
    req_str,
    require_dict,
    require_list,
    valid_until,
)
from .points import ItemPoints
from .sh_envelope import envelope_parser, item_time_ms

FEED = "charging"

# National charging-interconnection status codes → canonical connector status.
CONNECTOR_STATUS = {
    0: "OFFLINE",
    1: "AVAILABLE",
    2: "RESERVED",  # plugged in, not charging: the connector is taken
    3: "CHARGING",
    4: "RESERVED",
    255: "FAULTED",
}
CONNECTOR_TYPE = {3: "GB_T_AC", 4: "GB_T_DC"}


def _connector(raw: object, where: str) -> JsonDict:
    item = require_dict(raw, where)
    status = req_int(item, "status")
    if status not in CONNECTOR_STATUS:
        raise ItemError(f"{where}.status {status} is not a known status code (0-4 or 255)")
    type_code = opt_int(item, "connectorType")
    connector: JsonDict = {
        "id": req_str(item, "connectorId"),
        "type": CONNECTOR_TYPE.get(type_code, "OTHER") if type_code is not None else "OTHER",
        "status": CONNECTOR_STATUS[status],
        "power_kw": opt_num(item, "power"),
        "fault_code": opt_str(item, "faultCode"),
    }
    return {k: v for k, v in connector.items() if v is not None}


def _record(item: JsonDict, header_ms: int | None, source: str, points: ItemPoints) -> Record:
    station_id = req_str(item, "stationId")
    lng, lat = points.of(item)
    check_in_shanghai(lng, lat)
    observed = item_time_ms(item, "updateTime", header_ms)
    raw_connectors = require_list(item.get("connectors", []), "connectors")
    is_public = item.get("isPublic", 1)
    # Anything but an explicit 1/true is treated as private: never released below operator.
    public = is_public is True or (not isinstance(is_public, bool) and as_int(is_public, "isPublic") == 1)
    return build(
        FEED,
        {
            "id": station_id,
            "source": source,
            "observed_at": observed,
            "expires_at": valid_until(FEED, observed, header_ms),
            "lng": lng,
            "lat": lat,
            "name": opt_str(item, "stationName"),
            "operator": opt_str(item, "operatorName"),
            "public": public,
            "connectors": [_connector(c, f"connectors[{i}]") for i, c in enumerate(raw_connectors)],
            "seq": opt_int(item, "seq"),
        },
    )


parse, parse_chunks = envelope_parser(FEED, list_key="stations", time_key="updateTime", build_record=_record)
