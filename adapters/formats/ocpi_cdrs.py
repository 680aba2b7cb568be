"""``ocpi-cdrs``: OCPI 2.2.1 CDRs module responses (``GET /cdrs``) → finished charging sessions.

The response must be an OCPI envelope (``status_code`` 1000–1999, ``data`` an array of CDR objects);
anything else rejects the whole body. One CDR → one ChargingSession; a CDR that cannot become one is a
dead letter of its own, with its locator ``data[i]``, and never costs the others.

``observed_at`` is the session's end (``end_date_time``), not ``last_updated``: the record describes
something that happened when the car left, that moment never changes, whereas ``last_updated`` is the
operator's bookkeeping time (it trails the end by however long billing took). A CDR is final in OCPI
2.2.1, so ``end_date_time`` ≤ ``last_updated`` and a poller that resumes from the newest ``observed_at``
overlaps the previous window instead of missing anything.
"""

from __future__ import annotations

from typing import Any

from schemas import Record

from .common import (
    TTL_MS,
    ItemError,
    JsonDict,
    as_number,
    build,
    iso_time_ms,
    load_json,
    never_raises,
    opt_num,
    opt_str,
    req_num,
    req_str,
    require_dict,
    require_list,
    to_wgs84,
)
from .items import parse_list
from .ocpi_envelope import check_status
from .result import ParseResult

FEED = "charging_sessions"


def _cdrs(payload: Any) -> list[Any]:
    """The CDR list of an OCPI response envelope; ItemError for anything that is not one."""
    envelope = require_dict(payload, "the response")
    if "status_code" not in envelope:
        raise ItemError("not an OCPI response: missing status_code")
    check_status(envelope, envelope["status_code"])
    if "data" not in envelope:
        raise ItemError("OCPI response without data")
    return require_list(envelope["data"], "data")


def _coordinates(location: JsonDict) -> tuple[float, float]:
    """OCPI GeoLocation: decimal strings, WGS-84 by definition."""
    coordinates = require_dict(location.get("coordinates"), "cdr_location.coordinates")
    lat = as_number(coordinates.get("latitude"), "cdr_location.coordinates.latitude")
    lng = as_number(coordinates.get("longitude"), "cdr_location.coordinates.longitude")
    return to_wgs84(lng, lat, "wgs84")


def cdr_record(cdr: JsonDict, *, source: str) -> Record:
    """One OCPI CDR → a validated ChargingSession."""
    cdr_id = req_str(cdr, "id")
    started = iso_time_ms(cdr.get("start_date_time"), "start_date_time")
    ended = iso_time_ms(cdr.get("end_date_time"), "end_date_time")
    if ended < started:
        raise ItemError("end_date_time is before start_date_time")
    iso_time_ms(cdr.get("last_updated"), "last_updated")  # required by OCPI: a CDR without it is not one
    energy = req_num(cdr, "total_energy")
    # Not mapped, but a CDR whose totals are not numbers is corrupt: do not trust its energy either.
    req_num(cdr, "total_time")
    opt_num(cdr, "total_parking_time")
    token = require_dict(cdr.get("cdr_token"), "cdr_token")
    location = require_dict(cdr.get("cdr_location"), "cdr_location")
    lng, lat = _coordinates(location)
    evse_uid = req_str(location, "evse_uid")
    connector = req_str(location, "connector_id")
    return build(
        FEED,
        {
            "id": cdr_id,
            "source": source,
            "observed_at": ended,
            "expires_at": ended + TTL_MS[FEED],
            "station_id": req_str(location, "id"),
            # The same "<evse uid>:<connector id>" the ocpi-locations format gives station connectors.
            "connector_id": f"{evse_uid}:{connector}",
            "lng": lng,
            "lat": lat,
            "started_at": started,
            "ended_at": ended,
            "energy_kwh": energy,
            "token_id": req_str(token, "uid"),
            "contract_id": opt_str(token, "contract_id"),
        },
    )


@never_raises(FEED)
def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
    result = ParseResult()
    try:
        items = _cdrs(load_json(data))
    except ItemError as err:
        result.reject(data, source=source, feed=FEED, reason=str(err), received_at_ms=received_at_ms)
        return result
    return parse_list(
        items,
        "data",
        lambda item, where: cdr_record(require_dict(item, where), source=source),
        source=source,
        feed=FEED,
        received_at_ms=received_at_ms,
        result=result,
    )
