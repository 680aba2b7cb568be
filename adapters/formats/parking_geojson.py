"""``parking-geojson``: a WFS / ParkAPI-style GeoJSON FeatureCollection of car parks in WGS-84.

Field names are those of the Karlsruhe open-data service (``gesamte_parkplaetze`` total,
``freie_parkplaetze`` free, ``echtzeit_status``, ``geschlossen`` "T"/"F", ``stand_freieparkplaetze``).
Ids are ``<source>:<feature id>``: car-park numbers repeat between cities.
"""

from __future__ import annotations

from typing import Any

from schemas import Record

from .common import (
    TTL_MS,
    ItemError,
    build,
    iso_time_ms,
    load_json,
    never_raises,
    opt_int,
    opt_str,
    require_dict,
    require_list,
)
from .geojson import point_of
from .items import parse_list
from .result import ParseResult

FEED = "parking"


def lot_status(properties: dict[str, Any]) -> str:
    if properties.get("geschlossen") == "T":
        return "closed"
    realtime = properties.get("echtzeit_status")
    if realtime == "OK":
        return "open"
    return "unknown"  # "Störung" (fault) or no live data


def _record(feature: Any, where: str, *, source: str, fallback_ms: int | None) -> Record:
    feature = require_dict(feature, where)
    properties = require_dict(feature.get("properties"), f"{where}.properties")
    native_id = feature.get("id") if feature.get("id") is not None else properties.get("id")
    if native_id is None or isinstance(native_id, bool | dict | list):
        raise ItemError("feature has no id")
    lng, lat = point_of(feature)
    stamp = properties.get("stand_freieparkplaetze") or properties.get("stand_stammdaten")
    if stamp is not None:
        observed = iso_time_ms(stamp, "stand_freieparkplaetze")
    elif fallback_ms is not None:
        observed = fallback_ms
    else:
        raise ItemError("no time: neither stand_freieparkplaetze, stand_stammdaten nor timeStamp")
    return build(
        FEED,
        {
            "id": f"{source}:{native_id}",
            "source": source,
            "observed_at": observed,
            "expires_at": observed + TTL_MS[FEED],
            "lng": lng,
            "lat": lat,
            "name": opt_str(properties, "parkhaus_name"),
            "capacity": opt_int(properties, "gesamte_parkplaetze"),
            "free": opt_int(properties, "freie_parkplaetze"),
            "status": lot_status(properties),
        },
    )


@never_raises(FEED)
def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
    result = ParseResult()
    try:
        collection = require_dict(load_json(data), "the response")
        features = require_list(collection.get("features"), "features")
        fallback = iso_time_ms(collection["timeStamp"], "timeStamp") if collection.get("timeStamp") else None
    except ItemError as err:
        result.reject(data, source=source, feed=FEED, reason=str(err), received_at_ms=received_at_ms)
        return result
    return parse_list(
        features,
        "features",
        lambda f, where: _record(f, where, source=source, fallback_ms=fallback),
        source=source,
        feed=FEED,
        received_at_ms=received_at_ms,
        result=result,
    )
