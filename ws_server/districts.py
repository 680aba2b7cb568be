"""District names for subscriptions: adcode, Chinese name (with or without 区) or English name → the
district's outline in GCJ-02 (the datum streams match in), from ``geo.districts``."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geo.crs import wgs84_to_gcj02_arrays
from geo.districts import district_index

# English names as the districts use them in romanised signage (adcode → name).
ENGLISH: dict[str, str] = {
    "310101": "Huangpu",
    "310104": "Xuhui",
    "310105": "Changning",
    "310106": "Jing'an",
    "310107": "Putuo",
    "310109": "Hongkou",
    "310110": "Yangpu",
    "310112": "Minhang",
    "310113": "Baoshan",
    "310114": "Jiading",
    "310115": "Pudong",
    "310116": "Jinshan",
    "310117": "Songjiang",
    "310118": "Qingpu",
    "310120": "Fengxian",
    "310151": "Chongming",
}


def _to_gcj(geometry: BaseGeometry) -> BaseGeometry:
    def convert(xy: np.ndarray) -> np.ndarray:
        x, y = wgs84_to_gcj02_arrays(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    converted: BaseGeometry = shapely.transform(geometry, convert)
    return converted


def _normal(name: str) -> str:
    return name.strip().lower().replace("'", "").replace("’", "").replace(" ", "").removesuffix("district")


@cache
def _table() -> tuple[dict[str, str], dict[str, BaseGeometry], dict[str, str]]:
    names: dict[str, str] = {}
    outlines: dict[str, BaseGeometry] = {}
    chinese: dict[str, str] = {}
    for district in district_index().districts:
        code = district.adcode
        outlines[code] = _to_gcj(district.geometry)
        chinese[code] = district.name_zh
        names[code] = code
        names[_normal(district.name_zh)] = code
        names[_normal(district.name_zh.removesuffix("区").removesuffix("新"))] = code
        if code in ENGLISH:
            names[_normal(ENGLISH[code])] = code
    return names, outlines, chinese


def lookup_district(name: str) -> tuple[str, BaseGeometry] | None:
    """(adcode, GCJ-02 outline) of a district by adcode, Chinese or English name; None if unknown."""
    names, outlines, _ = _table()
    code = names.get(_normal(name))
    return None if code is None else (code, outlines[code])


def districts_geojson(simplify_deg: float = 0.0005) -> dict[str, Any]:
    """All district outlines (GCJ-02, simplified for drawing) as a GeoJSON FeatureCollection."""
    _, outlines, chinese = _table()
    features = []
    for code, geometry in outlines.items():
        features.append(
            {
                "type": "Feature",
                "properties": {"adcode": code, "name": chinese[code], "name_en": ENGLISH.get(code, code)},
                "geometry": shapely.geometry.mapping(geometry.simplify(simplify_deg)),
            }
        )
    return {"type": "FeatureCollection", "features": features}
