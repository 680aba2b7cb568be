"""GeoJSON helpers: a feature's point, and the collection's declared CRS."""

from __future__ import annotations

from typing import Any

from .common import ItemError, as_number, require_dict, require_list


def point_of(feature: dict[str, Any]) -> tuple[float, float]:
    """The (x, y) of a Point feature: lng/lat in degrees, or easting/northing in a projected CRS."""
    geometry = require_dict(feature.get("geometry"), "geometry")
    if geometry.get("type") != "Point":
        raise ItemError(f"geometry type {str(geometry.get('type'))[:30]!r} is not Point")
    coordinates = require_list(geometry.get("coordinates"), "geometry.coordinates")
    if len(coordinates) < 2:
        raise ItemError("geometry.coordinates has fewer than two numbers")
    return as_number(coordinates[0], "geometry.coordinates[0]"), as_number(coordinates[1], "geometry.coordinates[1]")


def declared_epsg(collection: dict[str, Any]) -> int | None:
    """EPSG code of a legacy ``crs`` member (``urn:ogc:def:crs:EPSG::25832`` or ``EPSG:25832``)."""
    crs = collection.get("crs")
    if not isinstance(crs, dict):
        return None
    properties = crs.get("properties")
    name = properties.get("name") if isinstance(properties, dict) else None
    if not isinstance(name, str):
        return None
    tail = name.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None
