"""The map page's base layers as GeoJSON, built from the data bundled in ``geo/``: district outlines and
label points (Chinese and English names), metro lines and stations, scenic areas.

Everything is drawn in one coordinate system, the one the feeds deliver: GCJ-02 by default (what every tier
receives unless it asks for WGS-84), WGS-84 on request for licensed and operator clients. The bundled files
are WGS-84 (districts are converted to WGS-84 when ``geo.districts`` loads them), so each layer is converted
here; a layer and a feed in the same CRS line up to the metre, not half a kilometre apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import orjson
import shapely
import shapely.ops
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geo.crs import wgs84_to_gcj02_arrays
from geo.districts import district_index
from geo.grid import EARTH_RADIUS_M
from geo.metro import metro_network
from geo.scenic import scenic_areas

from .districts import ENGLISH

LAYER_CRS = ("gcj02", "wgs84")
DISTRICT_SIMPLIFY_DEG = 0.0003  # ~30 m: invisible at city zoom, keeps the layer small
CIRCLE_VERTICES = 48

# The Shanghai Metro's published line colours (lines in the bundled 2017 network).
METRO_LINE_COLOURS: dict[str, str] = {
    "Line 1": "#E3002B",
    "Line 2": "#8CC220",
    "Line 3": "#FCD600",
    "Line 4": "#461D84",
    "Line 5": "#944D9A",
    "Line 6": "#D40068",
    "Line 7": "#ED6F00",
    "Line 8": "#0094D8",
    "Line 9": "#87CAED",
    "Line 10": "#C7AFD3",
    "Line 11": "#871C2B",
    "Line 12": "#007A60",
    "Line 13": "#E999C0",
    "Line 16": "#98D1C0",
}

Convert = Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]]


def _converter(crs: str) -> Convert:
    if crs == "gcj02":
        return wgs84_to_gcj02_arrays
    if crs == "wgs84":
        return lambda x, y: (x, y)
    raise ValueError(f"unknown crs {crs!r}; layers are drawn in {' or '.join(LAYER_CRS)}")


def _transform(geometry: BaseGeometry, convert: Convert) -> BaseGeometry:
    def along(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = convert(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    moved: BaseGeometry = shapely.transform(geometry, along)
    return moved


def _point(lng: float, lat: float, convert: Convert) -> list[float]:
    x, y = convert(np.array([lng]), np.array([lat]))
    return [round(float(x[0]), 6), round(float(y[0]), 6)]


def _feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def _collection(features: list[dict[str, Any]], crs: str) -> dict[str, Any]:
    return {"type": "FeatureCollection", "crs_name": crs, "features": features}


def districts_layer(crs: str) -> dict[str, Any]:
    """District outlines with adcode, Chinese and English names and the outline's bounding box."""
    convert = _converter(crs)
    features = []
    for d in district_index().districts:
        outline = _transform(d.geometry, convert).simplify(DISTRICT_SIMPLIFY_DEG)
        x0, y0, x1, y1 = (round(v, 5) for v in outline.bounds)
        features.append(
            _feature(
                shapely.geometry.mapping(outline),
                adcode=d.adcode,
                name_zh=d.name_zh,
                name_en=ENGLISH.get(d.adcode, d.adcode),
                bbox=[x0, y0, x1, y1],
            )
        )
    return _collection(features, crs)


def district_labels_layer(crs: str) -> dict[str, Any]:
    """One point per district, inside its largest part, where its name is written."""
    convert = _converter(crs)
    features = []
    for d in district_index().districts:
        largest = max(d.geometry.geoms, key=lambda g: g.area)
        # The pole-ish point inside a concave outline keeps the label on land and inside the district.
        inside = shapely.ops.polylabel(largest, tolerance=0.001)
        features.append(
            _feature(
                {"type": "Point", "coordinates": _point(inside.x, inside.y, convert)},
                adcode=d.adcode,
                name_zh=d.name_zh,
                name_en=ENGLISH.get(d.adcode, d.adcode),
            )
        )
    return _collection(features, crs)


def metro_lines_layer(crs: str) -> dict[str, Any]:
    """One MultiLineString per line, joining neighbouring stations that both serve it."""
    convert = _converter(crs)
    network = metro_network()
    segments: dict[str, list[list[list[float]]]] = {}
    for station in network.stations:
        for other_id in station.neighbours:
            other = network.get(other_id)
            if other is None or other.id < station.id:  # each pair once
                continue
            for line in set(station.lines) & set(other.lines):
                a = _point(station.lng, station.lat, convert)
                b = _point(other.lng, other.lat, convert)
                segments.setdefault(line, []).append([a, b])
    features = [
        _feature(
            {"type": "MultiLineString", "coordinates": parts},
            line=line,
            colour=METRO_LINE_COLOURS.get(line, "#666666"),
        )
        for line, parts in sorted(segments.items(), key=lambda kv: _line_number(kv[0]))
    ]
    return _collection(features, crs)


def _line_number(line: str) -> int:
    digits = "".join(c for c in line if c.isdigit())
    return int(digits) if digits else 0


def metro_stations_layer(crs: str) -> dict[str, Any]:
    convert = _converter(crs)
    features = [
        _feature(
            {"type": "Point", "coordinates": _point(s.lng, s.lat, convert)},
            id=s.id,
            name_en=s.name,
            lines=", ".join(s.lines),
            interchange=len(s.lines) > 1,
        )
        for s in metro_network().stations
    ]
    return _collection(features, crs)


def _circle(lng: float, lat: float, radius_m: float) -> list[tuple[float, float]]:
    """A WGS-84 ring approximating a circle on the ground (local plane; radii here are under 2 km)."""
    m_per_deg_lat = EARTH_RADIUS_M * math.pi / 180.0
    m_per_deg_lng = m_per_deg_lat * math.cos(math.radians(lat))
    ring = []
    for i in range(CIRCLE_VERTICES):
        a = 2 * math.pi * i / CIRCLE_VERTICES
        ring.append((lng + radius_m * math.cos(a) / m_per_deg_lng, lat + radius_m * math.sin(a) / m_per_deg_lat))
    ring.append(ring[0])
    return ring


def scenic_areas_layer(crs: str) -> dict[str, Any]:
    """Scenic areas as their grounds (polygon, or circle of ``radius_m``), with names, level and capacity."""
    convert = _converter(crs)
    features = []
    for area in scenic_areas().areas:
        ring = list(area.polygon) if area.polygon is not None else _circle(area.lng, area.lat, area.radius_m)
        grounds = _transform(shapely.Polygon(ring), convert)
        features.append(
            _feature(
                shapely.geometry.mapping(grounds),
                code=area.code,
                name_zh=area.name_zh,
                name_en=area.name_en,
                level=area.level,
                max_capacity=area.max_capacity,
                radius_m=area.radius_m,
                district=area.district_adcode,
                centre=_point(area.lng, area.lat, convert),
            )
        )
    return _collection(features, crs)


LAYERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "districts": districts_layer,
    "district-labels": district_labels_layer,
    "metro-lines": metro_lines_layer,
    "metro-stations": metro_stations_layer,
    "scenic-areas": scenic_areas_layer,
}


@cache
def layer_body(name: str, crs: str = "gcj02") -> bytes:
    """The layer as GeoJSON bytes (built once per name and CRS). KeyError for an unknown layer name,
    ValueError for an unknown CRS."""
    return orjson.dumps(LAYERS[name](crs))
