"""``parking-geojson-utm``: a GeoJSON FeatureCollection of car parks in UTM metres (Freiburg, EPSG:25832).

Properties as the Freiburg service publishes them, all as strings: ``obs_max`` total, ``obs_free``
free, ``obs_state`` 1 open / 0 closed, ``obs_ts`` local (Europe/Berlin) time, ``park_name``, ``park_id``.
The collection's ``crs`` member picks the UTM zone; a collection without one is read as EPSG:25832.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

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
    req_str,
    require_dict,
    require_list,
)
from .geojson import declared_epsg, point_of
from .items import parse_list
from .result import ParseResult
from .utm import utm_to_lnglat, zone_of_epsg

FEED = "parking"
DEFAULT_EPSG = 25832
LOCAL_TIME = ZoneInfo("Europe/Berlin")
STATES = {"1": "open", "0": "closed"}


def _record(feature: Any, where: str, *, source: str, zone: int) -> Record:
    feature = require_dict(feature, where)
    properties = require_dict(feature.get("properties"), f"{where}.properties")
    easting, northing = point_of(feature)
    if not (100_000 <= easting <= 900_000 and 0 <= northing <= 9_400_000):
        raise ItemError(f"({easting}, {northing}) is not a UTM easting/northing in metres")
    lng, lat = utm_to_lnglat(easting, northing, zone)
    observed = iso_time_ms(properties.get("obs_ts"), "obs_ts", naive_zone=LOCAL_TIME)
    state = properties.get("obs_state")
    return build(
        FEED,
        {
            "id": f"{source}:{req_str(properties, 'park_id')}",
            "source": source,
            "observed_at": observed,
            "expires_at": observed + TTL_MS[FEED],
            "lng": round(lng, 7),
            "lat": round(lat, 7),
            "name": opt_str(properties, "park_name"),
            "capacity": opt_int(properties, "obs_max"),
            "free": opt_int(properties, "obs_free"),
            "status": STATES.get(str(state), "unknown"),
        },
    )


@never_raises(FEED)
def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
    result = ParseResult()
    try:
        collection = require_dict(load_json(data), "the response")
        features = require_list(collection.get("features"), "features")
        epsg = declared_epsg(collection) or DEFAULT_EPSG
        zone = zone_of_epsg(epsg)
        if zone is None:
            raise ItemError(f"EPSG:{epsg} is not a northern UTM zone (EPSG:258xx or 326xx)")
    except ItemError as err:
        result.reject(data, source=source, feed=FEED, reason=str(err), received_at_ms=received_at_ms)
        return result
    return parse_list(
        features,
        "features",
        lambda f, where: _record(f, where, source=source, zone=zone),
        source=source,
        feed=FEED,
        received_at_ms=received_at_ms,
        result=result,
    )
