"""Real Shanghai places the simulated city is built on: metro stations, district centres, scenic areas.

All loaded from the data bundled in ``geo/data`` (see the README and SCENIC_AREAS.md there) and returned in
WGS-84. Also a flat local metric frame (metres east/north of People's Square) for route geometry.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geo import crs
from geo.metro import metro_network
from geo.scenic import ScenicArea
from geo.scenic import scenic_areas as geo_scenic_areas

GEO_DATA = Path(crs.__file__).resolve().parent / "data"

# Local frame origin: People's Square. Equirectangular: within Shanghai (< 100 km) the scale error is < 1 %,
# and positions go through the same pair of functions both ways, so nothing drifts.
ORIGIN_LNG = 121.4705
ORIGIN_LAT = 31.2349
_M_PER_DEG_LAT = 110_950.0
_M_PER_DEG_LNG = 111_320.0 * math.cos(math.radians(ORIGIN_LAT))

FloatArray = NDArray[np.float64]


def to_xy(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = (np.asarray(lngs, dtype=np.float64) - ORIGIN_LNG) * _M_PER_DEG_LNG
    y = (np.asarray(lats, dtype=np.float64) - ORIGIN_LAT) * _M_PER_DEG_LAT
    return x, y


def to_lnglat(xs: ArrayLike, ys: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lng = np.asarray(xs, dtype=np.float64) / _M_PER_DEG_LNG + ORIGIN_LNG
    lat = np.asarray(ys, dtype=np.float64) / _M_PER_DEG_LAT + ORIGIN_LAT
    return lng, lat


@dataclass(frozen=True, slots=True)
class MetroStation:
    station_id: str
    name: str
    lng: float
    lat: float
    neighbours: tuple[str, ...]
    lines: tuple[str, ...]  # "1", "2", ... "16"


@dataclass(frozen=True, slots=True)
class DistrictCentre:
    adcode: str
    name_zh: str
    lng: float
    lat: float


@cache
def metro_stations() -> tuple[MetroStation, ...]:
    """The 302 stations of the 2017 network with their lines and neighbours (WGS-84), from ``geo.metro``,
    with line names shortened to the number the simulated trains carry ("Line 3" → "3")."""
    return tuple(
        MetroStation(
            station_id=s.id,
            name=s.name,
            lng=s.lng,
            lat=s.lat,
            neighbours=s.neighbours,
            lines=tuple(line.removeprefix("Line ").strip() for line in s.lines),
        )
        for s in metro_network().stations
    )


@cache
def district_centres() -> tuple[DistrictCentre, ...]:
    """Each district's government seat (the DataV ``center``), converted from GCJ-02 to WGS-84."""
    data = json.loads((GEO_DATA / "shanghai_districts_datav_gcj02.geojson").read_text(encoding="utf-8"))
    centres: list[DistrictCentre] = []
    for feature in data["features"]:
        props = feature["properties"]
        lng, lat = crs.gcj02_to_wgs84(float(props["center"][0]), float(props["center"][1]))
        centres.append(DistrictCentre(str(props["adcode"]), str(props["name"]), lng, lat))
    return tuple(centres)


def scenic_areas() -> tuple[ScenicArea, ...]:
    """The areas the simulator serves: geo's scenic-areas data, those with a (published or estimated)
    capacity, since visitor curves are drawn against it."""
    return tuple(a for a in geo_scenic_areas().areas if a.max_capacity)


# Resident population by district (millions, 2020 census, rounded): where homes, trips, car parks and
# chargers concentrate.
DISTRICT_POPULATION_M: dict[str, float] = {
    "310101": 0.66,
    "310104": 1.11,
    "310105": 0.69,
    "310106": 0.98,
    "310107": 1.24,
    "310109": 0.76,
    "310110": 1.24,
    "310112": 2.65,
    "310113": 2.24,
    "310114": 1.83,
    "310115": 5.68,
    "310116": 0.82,
    "310117": 1.91,
    "310118": 1.27,
    "310120": 1.14,
    "310151": 0.64,
}


def sample_points_in_districts(
    rng: np.random.Generator, count: int, weights: dict[str, float] | None = None
) -> tuple[FloatArray, FloatArray, list[str]]:
    """``count`` WGS-84 points inside Shanghai's districts, each district getting a share by ``weights``.

    Rejection sampling in each district's bounding box against its WGS-84 polygon (from ``geo.districts``).
    """
    import shapely

    from geo.districts import district_index

    index = district_index()
    weights = weights or DISTRICT_POPULATION_M
    codes = sorted(weights)
    shares = np.array([weights[c] for c in codes], dtype=np.float64)
    per_district = rng.multinomial(count, shares / shares.sum())
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    adcodes: list[str] = []
    for code, n in zip(codes, per_district.tolist(), strict=True):
        if n == 0:
            continue
        geom = index.by_adcode(code).geometry
        shapely.prepare(geom)
        min_x, min_y, max_x, max_y = geom.bounds
        got_x: list[FloatArray] = []
        got_y: list[FloatArray] = []
        have = 0
        while have < n:
            cand_x = rng.uniform(min_x, max_x, size=max(64, 3 * (n - have)))
            cand_y = rng.uniform(min_y, max_y, size=cand_x.size)
            inside = shapely.contains_xy(geom, cand_x, cand_y)
            got_x.append(cand_x[inside])
            got_y.append(cand_y[inside])
            have += int(inside.sum())
        xs.append(np.concatenate(got_x)[:n])
        ys.append(np.concatenate(got_y)[:n])
        adcodes.extend([code] * n)
    return np.concatenate(xs), np.concatenate(ys), adcodes
