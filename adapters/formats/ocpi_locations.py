"""``ocpi-locations``: OCPI 2.2.1 Location objects (a GET response, a list, or one Location).

One Location → one ChargingStation whose connectors carry their EVSE's status. ``publish: false`` (or
missing, the safe reading) → ``public: False``, which the tier policy never releases below operator.
"""

from __future__ import annotations

from typing import Any

from schemas import Record

from .common import (
    ItemError,
    JsonDict,
    as_number,
    build,
    iso_time_ms,
    load_json,
    never_raises,
    opt_num,
    opt_str,
    req_str,
    require_dict,
    require_list,
    valid_until,
)
from .items import parse_items, parse_list
from .ocpi_envelope import check_status
from .result import ParseResult

FEED = "charging"

# OCPI EVSE status → canonical connector status. BLOCKED (a car or barrier in the way) and the
# not-yet/no-longer-operating states mean "cannot be used now" without being a fault.
EVSE_STATUS = {
    "AVAILABLE": "AVAILABLE",
    "CHARGING": "CHARGING",
    "RESERVED": "RESERVED",
    "BLOCKED": "OFFLINE",
    "INOPERATIVE": "OFFLINE",
    "PLANNED": "OFFLINE",
    "OUTOFORDER": "FAULTED",
    "UNKNOWN": "UNKNOWN",
}

CONNECTOR_TYPE = {
    "IEC_62196_T2": "TYPE2",
    "IEC_62196_T2_COMBO": "CCS2",
    "CHADEMO": "CHADEMO",
    "GBT_AC": "GB_T_AC",
    "GBT_DC": "GB_T_DC",
    "TESLA_R": "TESLA",
    "TESLA_S": "TESLA",
}


def location_key(location: JsonDict) -> str:
    """Entity id: OCPI location ids are unique per party, so prefix country code and party."""
    return f"{req_str(location, 'country_code')}*{req_str(location, 'party_id')}*{req_str(location, 'id')}"


def connector_power_kw(connector: JsonDict) -> float | None:
    watts = opt_num(connector, "max_electric_power")
    if watts is None:
        volts, amps = opt_num(connector, "max_voltage"), opt_num(connector, "max_amperage")
        if volts is None or amps is None:
            return None
        # For AC_3_PHASE, OCPI's max_voltage is line-to-neutral: three phases carry the current.
        phases = 3 if connector.get("power_type") == "AC_3_PHASE" else 1
        watts = volts * amps * phases
    return round(watts / 1000.0, 3)


def _connectors(evses: list[Any], times: list[int]) -> list[JsonDict]:
    out: list[JsonDict] = []
    for e_index, raw_evse in enumerate(evses):
        evse = require_dict(raw_evse, f"evses[{e_index}]")
        uid = req_str(evse, "uid")
        status_name = req_str(evse, "status")
        if status_name == "REMOVED":
            continue  # an EVSE that no longer exists carries no connectors
        if status_name not in EVSE_STATUS:
            raise ItemError(f"evses[{e_index}].status {status_name[:40]!r} is not an OCPI EVSE status")
        if evse.get("last_updated") is not None:
            times.append(iso_time_ms(evse["last_updated"], f"evses[{e_index}].last_updated"))
        for c_index, raw_connector in enumerate(require_list(evse.get("connectors"), f"evses[{e_index}].connectors")):
            connector = require_dict(raw_connector, f"evses[{e_index}].connectors[{c_index}]")
            standard = opt_str(connector, "standard")
            out.append(
                {
                    "id": f"{uid}:{req_str(connector, 'id')}",
                    "type": CONNECTOR_TYPE.get(standard or "", "OTHER"),
                    "status": EVSE_STATUS[status_name],
                    "power_kw": connector_power_kw(connector),
                }
            )
    return out


def location_record(location: JsonDict, *, source: str, vouched_ms: int | None = None) -> Record:
    """One OCPI Location (possibly merged from pushes) → a validated ChargingStation; ``vouched_ms`` is the
    time of the response that listed it (see ``valid_until``)."""
    coordinates = require_dict(location.get("coordinates"), "coordinates")
    lat = as_number(coordinates.get("latitude"), "coordinates.latitude")
    lng = as_number(coordinates.get("longitude"), "coordinates.longitude")
    times = [iso_time_ms(location.get("last_updated"), "last_updated")]
    evses = location.get("evses")
    connectors = _connectors(require_list(evses, "evses"), times) if evses is not None else []
    observed = max(times)
    operator = location.get("operator")
    publish = location.get("publish")
    return build(
        FEED,
        {
            "id": location_key(location),
            "source": source,
            "observed_at": observed,
            "expires_at": valid_until(FEED, observed, vouched_ms),
            "lng": lng,
            "lat": lat,
            "name": opt_str(location, "name"),
            "operator": opt_str(operator, "name") if isinstance(operator, dict) else None,
            "public": publish is True,
            "connectors": [{k: v for k, v in c.items() if v is not None} for c in connectors],
        },
    )


def _response_time(stamp: Any) -> int | None:
    # Only ever extends how long the listed states stay current: one that cannot be read is left out
    # rather than costing the whole response.
    try:
        return iso_time_ms(stamp, "timestamp") if stamp is not None else None
    except ItemError:
        return None


def _locations(payload: Any) -> tuple[list[Any], bool, int | None]:
    """Accept an OCPI response envelope, a list of Locations, or one Location (→ True); with the envelope's
    ``timestamp`` when it has one."""
    if isinstance(payload, dict) and "data" in payload and "coordinates" not in payload:
        check_status(payload, payload.get("status_code", 1000))
        data = payload["data"]
        vouched = _response_time(payload.get("timestamp"))
        return (data, False, vouched) if isinstance(data, list) else ([data], False, vouched)
    if isinstance(payload, list):
        return payload, False, None
    if isinstance(payload, dict):
        return [payload], True, None
    raise ItemError("the response is neither a Location, a list of Locations nor an OCPI response")


@never_raises(FEED)
def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
    result = ParseResult()
    try:
        items, single, vouched = _locations(load_json(data))
    except ItemError as err:
        result.reject(data, source=source, feed=FEED, reason=str(err), received_at_ms=received_at_ms)
        return result
    if not single:
        return parse_list(
            items,
            "data",
            lambda item, where: location_record(require_dict(item, where), source=source, vouched_ms=vouched),
            source=source,
            feed=FEED,
            received_at_ms=received_at_ms,
            result=result,
        )
    # A response that is one Location: its reject is the whole body, with no locator.
    return parse_items(
        items,
        lambda item, _index: location_record(require_dict(item, "the response"), source=source, vouched_ms=vouched),
        where=lambda _index, _item: None,
        original=lambda _item: data,
        source=source,
        feed=FEED,
        received_at_ms=received_at_ms,
        result=result,
    )
