"""Shanghai A-level scenic areas (``geo/data/scenic_areas.json``, WGS-84) with a vectorised area lookup.

Each area is a polygon ring when the file has one, otherwise a circle of ``radius_m`` about its centre.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import Polygon

from .grid import local_metres

DATA_DIR = Path(__file__).resolve().parent / "data"
SCENIC_FILE = DATA_DIR / "scenic_areas.json"

LEVELS = ("1A", "2A", "3A", "4A", "5A")


class ScenicDataError(ValueError):
    """The scenic-areas file breaks its schema; the message says where."""


@dataclass(frozen=True, slots=True)
class ScenicArea:
    code: str
    name_zh: str
    name_en: str
    level: str
    lng: float
    lat: float
    radius_m: float
    polygon: tuple[tuple[float, float], ...] | None
    max_capacity: int | None
    capacity_estimated: bool
    district_adcode: str

    def contains(self, lng: float, lat: float) -> bool:
        hit = ScenicAreas((self,)).area_of([lng], [lat])[0]
        return hit is not None


def _num(area: dict[str, Any], key: str, where: str) -> float:
    value = area.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenicDataError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _parse_area(area: Any, i: int) -> ScenicArea:
    where = f"areas[{i}]"
    if not isinstance(area, dict):
        raise ScenicDataError(f"{where}: expected an object")
    for key in ("code", "name_zh", "name_en", "level", "district_adcode"):
        if not isinstance(area.get(key), str) or not area[key]:
            raise ScenicDataError(f"{where}: {key} must be a non-empty string")
    where = f"{where} ({area['code']})"
    if area["level"] not in LEVELS:
        raise ScenicDataError(f"{where}: level {area['level']!r} is not one of {', '.join(LEVELS)}")
    lng, lat = _num(area, "lng", where), _num(area, "lat", where)
    radius = _num(area, "radius_m", where)
    if radius <= 0:
        raise ScenicDataError(f"{where}: radius_m must be positive")
    polygon = area.get("polygon")
    ring: tuple[tuple[float, float], ...] | None = None
    if polygon is not None:
        if not isinstance(polygon, list) or len(polygon) < 3:
            raise ScenicDataError(f"{where}: polygon must be null or a ring of at least 3 [lng, lat] points")
        try:
            ring = tuple((float(p[0]), float(p[1])) for p in polygon)
        except (TypeError, ValueError, IndexError):
            raise ScenicDataError(f"{where}: polygon points must be [lng, lat] numbers") from None
    capacity = area.get("max_capacity")
    if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0):
        raise ScenicDataError(f"{where}: max_capacity must be a positive integer or null")
    estimated = area.get("capacity_estimated")
    if not isinstance(estimated, bool):
        raise ScenicDataError(f"{where}: capacity_estimated must be true or false")
    return ScenicArea(
        code=area["code"],
        name_zh=area["name_zh"],
        name_en=area["name_en"],
        level=area["level"],
        lng=lng,
        lat=lat,
        radius_m=radius,
        polygon=ring,
        max_capacity=capacity,
        capacity_estimated=estimated,
        district_adcode=area["district_adcode"],
    )


def parse_scenic_areas(data: Any) -> tuple[ScenicArea, ...]:
    if not isinstance(data, dict) or not isinstance(data.get("areas"), list):
        raise ScenicDataError('expected an object with an "areas" list')
    areas = tuple(_parse_area(a, i) for i, a in enumerate(data["areas"]))
    codes = [a.code for a in areas]
    if len(set(codes)) != len(codes):
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        raise ScenicDataError(f"duplicate area codes: {', '.join(dupes)}")
    return areas


class ScenicAreas:
    """A set of areas with a vectorised ``area_of`` (circles by distance, polygons by containment)."""

    def __init__(self, areas: tuple[ScenicArea, ...]) -> None:
        self.areas = areas
        self._by_code = {a.code: a for a in areas}
        self._codes = np.array([a.code for a in areas], dtype=object)
        self._polygons = [Polygon(a.polygon) if a.polygon is not None else None for a in areas]
        for poly in self._polygons:
            if poly is not None:
                shapely.prepare(poly)

    def __len__(self) -> int:
        return len(self.areas)

    def get(self, code: str) -> ScenicArea | None:
        return self._by_code.get(code)

    def area_of(self, lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.object_]:
        """Code of the scenic area holding each WGS-84 point, or None. Where areas overlap, the one whose
        centre is nearest wins (a museum inside a park belongs to the museum)."""
        x = np.atleast_1d(np.asarray(lngs, dtype=np.float64))
        y = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        if x.shape != y.shape:
            raise ValueError(f"lngs and lats differ in shape: {x.shape} vs {y.shape}")
        best_d = np.full(x.shape, np.inf)
        best_i = np.full(x.shape, -1, dtype=np.intp)
        for i, area in enumerate(self.areas):
            dx, dy = local_metres(x, y, area.lng, area.lat)
            dist = np.hypot(dx, dy)
            poly = self._polygons[i]
            inside = dist <= area.radius_m if poly is None else shapely.contains_xy(poly, x, y)
            better = inside & (dist < best_d)
            best_d[better] = dist[better]
            best_i[better] = i
        out = np.full(x.shape, None, dtype=object)
        hit = best_i >= 0
        out[hit] = self._codes[best_i[hit]]
        return out


def load_scenic_areas(path: Path = SCENIC_FILE) -> ScenicAreas:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ScenicDataError(f"{path.name} is not valid JSON: {err}") from None
    return ScenicAreas(parse_scenic_areas(data))


@cache
def scenic_areas() -> ScenicAreas:
    """The bundled areas, loaded on first use."""
    return load_scenic_areas()


def scenic_area_of(lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.object_]:
    """Code of the scenic area holding each WGS-84 point (None outside all of them)."""
    return scenic_areas().area_of(lngs, lats)
