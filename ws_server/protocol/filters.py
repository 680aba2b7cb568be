"""Subscription filters: validation, a normal form (so equal filters share one stream), and matching.

Matching happens in GCJ-02, the datum of the district outlines and of the default output: a filter given in
WGS-84 is converted once when it is compiled, and each record's point once when it enters the node.
Spatial tests are vectorised over numpy arrays of points (one call per stream per tick).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry

from geo.crs import wgs84_to_gcj02, wgs84_to_gcj02_arrays

from .errors import INVALID_FILTER, ProtocolError
from .messages import MAX_POLYGON_VERTICES, Filter, MultiPolygonGeometry, PolygonGeometry

_ROUND = 6  # decimal places kept in the normal form (~0.1 m): equal viewports share a stream
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LNG_EQ = 111_320.0

DistrictLookup = Callable[[str], tuple[str, BaseGeometry] | None]
"""name, adcode or English name → (canonical id, GCJ-02 geometry), or None if unknown."""

FilterKey = tuple[Any, ...]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    key: FilterKey  # hashable normal form
    bounds: tuple[float, float, float, float] | None  # GCJ-02 envelope of the spatial part, if any
    geometry: BaseGeometry | None  # prepared polygon(s), GCJ-02
    near: tuple[float, float, float] | None  # (lng, lat) GCJ-02 and radius in metres
    routes: frozenset[str] | None
    ids: frozenset[str] | None
    stops: frozenset[str] | None = None  # the record's ``stop_id`` (an arrival's stop, a train's station)

    @property
    def spatial(self) -> bool:
        return self.bounds is not None

    def mask(self, lng: FloatArray, lat: FloatArray) -> BoolArray:
        """Which points (GCJ-02; NaN for records without a place) the spatial part admits."""
        if self.bounds is None:
            return np.ones(lng.shape, dtype=bool)
        x0, y0, x1, y1 = self.bounds
        inside: BoolArray = (lng >= x0) & (lng <= x1) & (lat >= y0) & (lat <= y1)
        if self.near is not None and inside.any():
            cx, cy, radius = self.near
            dx = (lng - cx) * (_M_PER_DEG_LNG_EQ * math.cos(math.radians(cy)))
            dy = (lat - cy) * _M_PER_DEG_LAT
            inside &= dx * dx + dy * dy <= radius * radius
        elif self.geometry is not None and inside.any():
            idx = np.flatnonzero(inside)
            inside[idx] = shapely.contains_xy(self.geometry, lng[idx], lat[idx])
        return inside

    @property
    def admits_everyone(self) -> bool:
        """No ids, stops or routes: ``admits`` is True for every record."""
        return self.ids is None and self.stops is None and self.routes is None

    def admits(self, entity_id: str, route_id: object, stop_id: object = None) -> bool:
        """The non-spatial part, for one record whose point already passed ``mask``."""
        if self.ids is not None and entity_id not in self.ids:
            return False
        if self.stops is not None and stop_id not in self.stops:
            return False
        return self.routes is None or route_id in self.routes


class PairTests:
    """What ``CompiledFilter.mask`` adds to its envelope test (the ``near`` circle, the polygon), made for many
    (filter, point) pairs in one pass: a tick's pairs for every stream at once (stream_index.py) instead of
    a numpy call per stream. The arithmetic is ``mask``'s, operation for operation, so the answers are equal
    (tests/test_ws_stream_index.py)."""

    def __init__(self, filters: Sequence[CompiledFilter]) -> None:
        near = [f.near or (0.0, 0.0, 0.0) for f in filters]
        self.has_near = np.array([f.near is not None for f in filters], dtype=bool)
        self.cx = np.array([c[0] for c in near], dtype=np.float64)
        self.cy = np.array([c[1] for c in near], dtype=np.float64)
        self.kx = np.array([_M_PER_DEG_LNG_EQ * math.cos(math.radians(c[1])) for c in near], dtype=np.float64)
        self.r2 = np.array([c[2] * c[2] for c in near], dtype=np.float64)
        self.has_geometry = np.array([f.geometry is not None for f in filters], dtype=bool)
        self.geometry = np.empty(len(filters), dtype=object)
        self.geometry[:] = [f.geometry for f in filters]

    def admitted(self, rows: NDArray[np.int64], lng: FloatArray, lat: FloatArray, in_envelope: BoolArray) -> BoolArray:
        """For pairs (filter ``rows[i]``, point ``lng[i], lat[i]``) whose envelope test is ``in_envelope``:
        whether the filter's spatial part admits the point."""
        out = in_envelope.copy()
        pick = np.flatnonzero(in_envelope & self.has_near[rows])
        if pick.size:
            r = rows[pick]
            dx = (lng[pick] - self.cx[r]) * self.kx[r]
            dy = (lat[pick] - self.cy[r]) * _M_PER_DEG_LAT
            out[pick] = dx * dx + dy * dy <= self.r2[r]
        pick = np.flatnonzero(in_envelope & self.has_geometry[rows])
        if pick.size:
            out[pick] = shapely.contains_xy(self.geometry[rows[pick]], lng[pick], lat[pick])
        return out


def _rounded(value: float) -> float:
    return round(value, _ROUND)


def _to_gcj(lng: float, lat: float, crs: str) -> tuple[float, float]:
    return wgs84_to_gcj02(lng, lat) if crs == "wgs84" else (lng, lat)


def polygon_vertices(geometry: PolygonGeometry | MultiPolygonGeometry) -> int:
    """Vertices in every ring: what validating the polygon costs."""
    parts = [geometry.coordinates] if isinstance(geometry, PolygonGeometry) else geometry.coordinates
    return sum(len(ring) for rings in parts for ring in rings)


def _polygon(geojson: PolygonGeometry | MultiPolygonGeometry, crs: str) -> BaseGeometry:
    parts = [geojson.coordinates] if isinstance(geojson, PolygonGeometry) else geojson.coordinates
    vertices = polygon_vertices(geojson)
    if vertices > MAX_POLYGON_VERTICES:
        raise ProtocolError(INVALID_FILTER, f"polygon has {vertices} vertices; at most {MAX_POLYGON_VERTICES}")
    # Checked before GEOS sees them: a NaN makes a ring "not closed" there, an exception, not an answer.
    coords = np.array([p for rings in parts for ring in rings for p in ring], dtype=np.float64)
    if not np.isfinite(coords).all():
        raise ProtocolError(INVALID_FILTER, "polygon has non-finite coordinates")
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise ProtocolError(INVALID_FILTER, "polygon coordinates must be (lng, lat) in degrees")
    try:
        polygons = [shapely.Polygon(rings[0], rings[1:]) for rings in parts]
        geometry: BaseGeometry = polygons[0] if isinstance(geojson, PolygonGeometry) else shapely.MultiPolygon(polygons)
    except (ValueError, TypeError, GEOSException) as err:
        raise ProtocolError(INVALID_FILTER, f"polygon coordinates are malformed: {err}") from None
    if geometry.is_empty:
        raise ProtocolError(INVALID_FILTER, "polygon is empty")
    if not geometry.is_valid:
        reason = shapely.is_valid_reason(geometry)
        raise ProtocolError(INVALID_FILTER, f"polygon is not valid: {reason}")
    if crs == "wgs84":
        geometry = shapely.transform(geometry, lambda xy: np.column_stack(wgs84_to_gcj02_arrays(xy[:, 0], xy[:, 1])))
    rounded: BaseGeometry = shapely.set_precision(geometry, 10.0**-_ROUND)
    return rounded


def compile_filter(flt: Filter, crs: str, districts: DistrictLookup) -> CompiledFilter:
    """Validate ``flt`` (given in ``crs``) and build its matcher and normal form."""
    spatial_parts = [p for p in ("bbox", "polygon", "district", "near") if getattr(flt, p) is not None]
    if len(spatial_parts) > 1:
        raise ProtocolError(INVALID_FILTER, f"use one spatial filter, not {' and '.join(spatial_parts)}")
    key: list[Any] = []
    bounds: tuple[float, float, float, float] | None = None
    geometry: BaseGeometry | None = None
    near: tuple[float, float, float] | None = None
    if flt.bbox is not None:
        x0, y0, x1, y1 = flt.bbox
        if not (x0 < x1 and y0 < y1):
            raise ProtocolError(INVALID_FILTER, "bbox must be [min_lng, min_lat, max_lng, max_lat] with min < max")
        (gx0, gy0), (gx1, gy1) = _to_gcj(x0, y0, crs), _to_gcj(x1, y1, crs)
        bounds = (_rounded(gx0), _rounded(gy0), _rounded(gx1), _rounded(gy1))
        key.append(("bbox", bounds))
    elif flt.polygon is not None:
        geometry = _polygon(flt.polygon, crs)
        shapely.prepare(geometry)
        bounds = tuple(geometry.bounds)  # type: ignore[assignment]
        key.append(("polygon", shapely.to_wkb(geometry, hex=True)))
    elif flt.district is not None:
        names = [flt.district] if isinstance(flt.district, str) else flt.district
        found: dict[str, BaseGeometry] = {}
        for name in names:
            hit = districts(name)
            if hit is None:
                raise ProtocolError(INVALID_FILTER, f"unknown district {name!r}")
            found[hit[0]] = hit[1]
        geometry = shapely.union_all(list(found.values())) if len(found) > 1 else next(iter(found.values()))
        shapely.prepare(geometry)
        bounds = tuple(geometry.bounds)  # type: ignore[assignment]
        key.append(("district", tuple(sorted(found))))
    elif flt.near is not None:
        cx, cy = _to_gcj(flt.near.lng, flt.near.lat, crs)
        radius = float(flt.near.radius_m)
        near = (_rounded(cx), _rounded(cy), round(radius, 1))
        dlat = radius / _M_PER_DEG_LAT
        dlng = radius / (_M_PER_DEG_LNG_EQ * math.cos(math.radians(cy)))
        bounds = (cx - dlng, cy - dlat, cx + dlng, cy + dlat)
        key.append(("near", near))
    routes = frozenset(flt.routes) if flt.routes is not None else None
    ids = frozenset(flt.ids) if flt.ids is not None else None
    if routes is not None:
        key.append(("routes", tuple(sorted(routes))))
    if ids is not None:
        key.append(("ids", tuple(sorted(ids))))
    stops = frozenset(flt.stops) if flt.stops is not None else None
    if stops is not None:
        key.append(("stops", tuple(sorted(stops))))
    return CompiledFilter(tuple(key), bounds, geometry, near, routes, ids, stops)
