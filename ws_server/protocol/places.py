"""Where a record is, for a subscription's filter: its own point, or for an aggregate (``agg_*``,
``schemas/aggregates.py``) without one, the place its group names.

- a group per district (``"group": "district"``, ``"key"``: the adcode) is placed at a point inside that
  district (its outline's representative point), so a ``district`` filter admits exactly that district's
  figures, and a ``bbox`` or ``near`` filter those of the districts whose point it holds;
- a group near a scenic area (``agg_parking``'s ``"group": "scenic"``) at the area's reference point;
- a group per route (``agg_vehicles``'s ``"group": "route"``) carries the route for a ``routes`` filter;
- a group with no place (per connector type) matches no spatial filter, as a record without a point.

Points are GCJ-02, the datum filters match in.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import shapely

from geo.crs import wgs84_to_gcj02
from geo.scenic import scenic_areas

from ..districts import lookup_district

NOWHERE = (math.nan, math.nan)


@cache
def district_point(adcode: str) -> tuple[float, float]:
    """A GCJ-02 point inside the district (NaN for an unknown adcode)."""
    hit = lookup_district(adcode)
    if hit is None:
        return NOWHERE
    point = shapely.point_on_surface(hit[1])
    return float(point.x), float(point.y)


@cache
def scenic_point(code: str) -> tuple[float, float]:
    """The scenic area's reference point in GCJ-02 (NaN for an unknown area)."""
    area = scenic_areas().get(code)
    return NOWHERE if area is None else wgs84_to_gcj02(area.lng, area.lat)


def record_point(record: dict[str, Any]) -> tuple[float, float]:
    """The record's point in GCJ-02 for matching; NaN when it has none."""
    lng, lat = record.get("lng"), record.get("lat")
    if isinstance(lng, int | float) and isinstance(lat, int | float):
        if record.get("crs", "gcj02") == "wgs84":
            return wgs84_to_gcj02(float(lng), float(lat))
        return float(lng), float(lat)
    group, key = record.get("group"), record.get("key")
    if not isinstance(key, str):
        return NOWHERE
    if group == "district":
        return district_point(key)
    if group == "scenic":
        return scenic_point(key)
    return NOWHERE


def record_route(record: dict[str, Any]) -> Any:
    """The route a ``routes`` filter matches: the record's ``route_id``, or a per-route aggregate's key."""
    route = record.get("route_id")
    if route is None and record.get("group") == "route":
        return record.get("key")
    return route
