"""``parking-ngsi``: FIWARE NGSI-v2 ``OffStreetParking`` entities (Heidelberg), normalised representation.

Each attribute is ``{"type", "value", "metadata"}``. Used: ``totalSpotNumber``, ``availableSpotNumber``,
``observationDateTime``, ``lat``/``lon`` (WGS-84; a GeoJSON ``location`` attribute is accepted too),
``name``, ``status`` (``Offen`` open, ``Geschlossen`` closed, anything else unknown).
"""

from __future__ import annotations

from typing import Any

from schemas import Record

from .common import (
    TTL_MS,
    ItemError,
    as_int,
    as_number,
    build,
    iso_time_ms,
    load_json,
    never_raises,
    require_dict,
    require_list,
)
from .geojson import point_of
from .items import parse_list
from .result import ParseResult

FEED = "parking"
STATUS = {"offen": "open", "open": "open", "geschlossen": "closed", "closed": "closed"}


def attribute(entity: dict[str, Any], name: str) -> Any:
    """An attribute's value (normalised form), or the bare value (keyValues form); None if absent."""
    raw = entity.get(name)
    if isinstance(raw, dict) and "value" in raw:
        return raw["value"]
    return raw


def _position(entity: dict[str, Any]) -> tuple[float, float]:
    lat, lon = attribute(entity, "lat"), attribute(entity, "lon")
    if lat is not None and lon is not None:
        return as_number(lon, "lon"), as_number(lat, "lat")
    location = attribute(entity, "location")
    if isinstance(location, dict):
        return point_of({"geometry": location})
    raise ItemError("no position: neither lat/lon nor location")


def _record(raw: Any, where: str, *, source: str) -> Record:
    entity = require_dict(raw, where)
    entity_id = entity.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        raise ItemError("entity has no id")
    if entity.get("type") not in (None, "OffStreetParking"):
        raise ItemError(f"entity type {str(entity.get('type'))[:40]!r} is not OffStreetParking")
    lng, lat = _position(entity)
    observed = iso_time_ms(attribute(entity, "observationDateTime"), "observationDateTime")
    total, free = attribute(entity, "totalSpotNumber"), attribute(entity, "availableSpotNumber")
    status = attribute(entity, "status")
    name = attribute(entity, "name")
    return build(
        FEED,
        {
            # NGSI ids are URNs, unique on their broker; prefix the source like the other foreign formats.
            "id": f"{source}:{entity_id}",
            "source": source,
            "observed_at": observed,
            "expires_at": observed + TTL_MS[FEED],
            "lng": lng,
            "lat": lat,
            "name": name if isinstance(name, str) and name else None,
            "capacity": None if total is None else as_int(total, "totalSpotNumber"),
            "free": None if free is None else as_int(free, "availableSpotNumber"),
            "status": STATUS.get(status.strip().lower(), "unknown") if isinstance(status, str) else "unknown",
        },
    )


@never_raises(FEED)
def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
    result = ParseResult()
    try:
        payload = load_json(data)
        entities = [payload] if isinstance(payload, dict) else require_list(payload, "the response")
    except ItemError as err:
        result.reject(data, source=source, feed=FEED, reason=str(err), received_at_ms=received_at_ms)
        return result
    return parse_list(
        entities,
        "entities",
        lambda e, where: _record(e, where, source=source),
        source=source,
        feed=FEED,
        received_at_ms=received_at_ms,
        result=result,
    )
