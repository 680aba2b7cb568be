"""Shanghai's 16 districts in WGS-84, loaded once, with a vectorised point-in-district lookup.

Source: the Alibaba DataV district file bundled in ``geo/data`` (GCJ-02, see ``geo/data/README.md``). Every
vertex is converted to WGS-84 with the exact inverse at load time, so the polygons line up with GPS, GTFS
and the metro station data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import MultiPolygon, Polygon
from shapely.strtree import STRtree

from . import crs

DATA_DIR = Path(__file__).resolve().parent / "data"
DISTRICTS_FILE = DATA_DIR / "shanghai_districts_datav_gcj02.geojson"


@dataclass(frozen=True, slots=True)
class District:
    adcode: str
    name_zh: str
    geometry: MultiPolygon  # WGS-84


@dataclass(frozen=True, slots=True)
class DistrictIndex:
    districts: tuple[District, ...]
    tree: STRtree

    def by_adcode(self, adcode: str) -> District:
        for d in self.districts:
            if d.adcode == adcode:
                return d
        raise KeyError(f"unknown district adcode {adcode!r}")

    def district_of(self, lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.object_]:
        """Adcode (str) of the district holding each WGS-84 point, or None outside all of them.

        A point on a shared border gets the district listed first in the source file.
        """
        x = np.atleast_1d(np.asarray(lngs, dtype=np.float64))
        y = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        if x.shape != y.shape:
            raise ValueError(f"lngs and lats differ in shape: {x.shape} vs {y.shape}")
        out = np.full(x.shape, None, dtype=object)
        finite = np.isfinite(x) & np.isfinite(y)
        idx = np.flatnonzero(finite)
        if idx.size == 0:
            return out
        points = shapely.points(x[idx], y[idx])
        point_i, geom_i = self.tree.query(points, predicate="intersects")
        # Keep the lowest district index per point so border points resolve the same way every time.
        order = np.lexsort((geom_i, point_i))
        point_i, geom_i = point_i[order], geom_i[order]
        first = np.ones(point_i.size, dtype=bool)
        first[1:] = point_i[1:] != point_i[:-1]
        codes = np.array([d.adcode for d in self.districts], dtype=object)
        out[idx[point_i[first]]] = codes[geom_i[first]]
        return out


def _ring_to_wgs84(ring: list[list[float]]) -> NDArray[np.float64]:
    coords = np.asarray(ring, dtype=np.float64)
    x, y = crs.gcj02_to_wgs84_arrays(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def _load(path: Path) -> DistrictIndex:
    data = json.loads(path.read_text(encoding="utf-8"))
    districts: list[District] = []
    for feature in data["features"]:
        props = feature["properties"]
        geom = feature["geometry"]
        parts = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        polygons = [Polygon(_ring_to_wgs84(rings[0]), [_ring_to_wgs84(hole) for hole in rings[1:]]) for rings in parts]
        multi = MultiPolygon(polygons)
        if not multi.is_valid:
            multi = shapely.make_valid(multi)
        districts.append(District(str(props["adcode"]), str(props["name"]), multi))
    return DistrictIndex(tuple(districts), STRtree([d.geometry for d in districts]))


@cache
def district_index() -> DistrictIndex:
    """The bundled districts, loaded and indexed on first use."""
    return _load(DISTRICTS_FILE)


def district_of(lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.object_]:
    """Adcode of the district holding each WGS-84 point (None outside Shanghai)."""
    return district_index().district_of(lngs, lats)
