"""Districts, metro stations and scenic areas: loaded from the bundled data, queried vectorised."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geo import crs
from geo.districts import district_index, district_of
from geo.metro import metro_network, nearest_station_ids
from geo.scenic import SCENIC_FILE, ScenicDataError, parse_scenic_areas, scenic_area_of, scenic_areas


def test_sixteen_districts_and_well_known_points() -> None:
    assert len(district_index().districts) == 16
    points = {
        (121.470457083, 31.234865971): "310101",  # People's Square (WGS-84), Huangpu
        (121.8, 31.0): "310115",  # Pudong
        (121.40, 31.66): "310151",  # Chongming island
        (121.23, 31.03): "310117",  # Songjiang
        (116.40, 39.91): None,  # Beijing
        (float("nan"), 31.2): None,
    }
    got = district_of([p[0] for p in points], [p[1] for p in points])
    assert got.tolist() == list(points.values())


def test_districts_are_in_wgs84_not_gcj02() -> None:
    # The Huangpu polygon in WGS-84 sits ~500 m south-west of the GCJ-02 source.
    huangpu = district_index().by_adcode("310101").geometry
    gx, gy = crs.wgs84_to_gcj02(huangpu.centroid.x, huangpu.centroid.y)
    assert 300 < abs(gx - huangpu.centroid.x) * 95_000 + abs(gy - huangpu.centroid.y) * 111_000 < 900


def test_metro_stations_lines_and_nearest() -> None:
    net = metro_network()
    assert len(net) == 302 and all(s.lines for s in net.stations)
    assert len(net.lines()) == 14
    ps = net.station("2035")
    assert ps.name == "People's Square" and set(ps.lines) == {"Line 1", "Line 2", "Line 8"}
    ids = nearest_station_ids([ps.lng + 0.0002, 121.439715575], [ps.lat, 31.171622034])
    assert ids.tolist() == ["2035", "2048"]
    idx, dist = net.nearest(np.full(10_000, ps.lng), np.full(10_000, ps.lat))
    assert (net.ids[idx] == "2035").all() and dist.max() < 1e-6
    with pytest.raises(KeyError, match="unknown metro station"):
        net.station("nope")


def test_scenic_areas_file_and_lookup() -> None:
    areas = scenic_areas()
    assert len(areas) >= 40
    for a in areas.areas:
        assert crs.plausibly_in_shanghai(a.lng, a.lat), a.code
    assert all(a.capacity_estimated or a.max_capacity for a in areas.areas)
    first = areas.areas[0]
    got = scenic_area_of([first.lng, 121.0], [first.lat, 30.75])
    assert got.tolist() == [first.code, None]
    # District codes in the file agree with our district polygons for nearly every centre.
    codes = district_of([a.lng for a in areas.areas], [a.lat for a in areas.areas])
    agree = sum(c == a.district_adcode for c, a in zip(codes, areas.areas, strict=True))
    assert agree >= len(areas) - 2


def test_scenic_polygon_and_bad_files() -> None:
    data = json.loads(SCENIC_FILE.read_text(encoding="utf-8"))
    area = dict(data["areas"][0], code="SCN-TEST", polygon=[[121.0, 31.0], [121.01, 31.0], [121.01, 31.01]])
    parsed = parse_scenic_areas({"areas": [area]})
    assert parsed[0].polygon is not None
    from geo.scenic import ScenicAreas

    s = ScenicAreas(parsed)
    assert s.area_of([121.008, 121.001], [31.002, 31.009]).tolist() == ["SCN-TEST", None]
    with pytest.raises(ScenicDataError, match="level"):
        parse_scenic_areas({"areas": [dict(area, level="6A")]})
    with pytest.raises(ScenicDataError, match="duplicate"):
        parse_scenic_areas({"areas": [area, area]})
