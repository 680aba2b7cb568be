"""The map page's base layers (ws_server/map_layers.py): complete, named in both languages, and in the same
CRS as the feeds, so a layer and the public records line up to the metre rather than half a kilometre."""

from __future__ import annotations

import json
import math
import time

import orjson
import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from geo.crs import wgs84_to_gcj02
from geo.districts import DISTRICTS_FILE
from ws_server.http_routes import HttpRoutes
from ws_server.map_layers import LAYERS, layer_body

from .map_city import PublicCity


def layer(name: str, crs: str = "gcj02") -> dict:
    return orjson.loads(layer_body(name, crs))


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    k = math.pi / 180
    dx = (b[0] - a[0]) * k * math.cos(a[1] * k)
    return math.hypot(dx, (b[1] - a[1]) * k) * 6_371_008.8


@pytest.fixture(scope="module")
def city() -> PublicCity:
    return PublicCity(int(time.time() * 1000), buses=10, lots=10, connectors=40)


def test_every_layer_is_a_feature_collection_in_either_crs() -> None:
    for name in LAYERS:
        for crs in ("gcj02", "wgs84"):
            data = layer(name, crs)
            assert data["type"] == "FeatureCollection" and data["features"] and data["crs_name"] == crs


def test_unknown_layer_and_crs_are_refused() -> None:
    with pytest.raises(KeyError):
        layer_body("roads")
    with pytest.raises(ValueError, match="unknown crs 'bd09'"):
        layer_body("districts", "bd09")


def test_districts_carry_chinese_and_english_names_and_sit_on_the_source_outlines() -> None:
    districts = layer("districts")["features"]
    assert len(districts) == 16
    names = {f["properties"]["name_zh"]: f["properties"]["name_en"] for f in districts}
    assert names["黄浦区"] == "Huangpu" and names["浦东新区"] == "Pudong"
    # The source file is GCJ-02: the GCJ-02 layer's bounding boxes are the source's (to the simplification).
    source = json.loads(DISTRICTS_FILE.read_text(encoding="utf-8"))
    for feature in source["features"]:
        ring = [p for poly in feature["geometry"]["coordinates"] for p in poly[0]]
        bbox = [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring)]
        ours = next(f for f in districts if f["properties"]["adcode"] == str(feature["properties"]["adcode"]))
        assert ours["properties"]["bbox"] == pytest.approx(bbox, abs=0.001)
    labels = layer("district-labels")["features"]
    assert {f["properties"]["name_en"] for f in labels} == set(names.values())


def test_metro_trains_of_the_public_feed_stand_on_the_station_layer(city: PublicCity) -> None:
    stations = {f["properties"]["id"]: f["geometry"]["coordinates"] for f in layer("metro-stations")["features"]}
    assert len(stations) == 302
    trains = city.records("metro")
    assert trains
    for train in trains:
        at = stations[train["stop_id"]]
        assert metres((train["lng"], train["lat"]), (at[0], at[1])) < 1.0
    lines = {f["properties"]["line"]: f["properties"]["colour"] for f in layer("metro-lines")["features"]}
    assert lines["Line 1"] == "#E3002B" and len(lines) == 14


def test_scenic_records_sit_at_the_centre_of_their_area(city: PublicCity) -> None:
    areas = {f["properties"]["code"]: f for f in layer("scenic-areas")["features"]}
    records = city.records("scenic")
    assert len(records) == len(areas) == 53
    for record in records:
        area = areas[record["id"]]
        assert metres((record["lng"], record["lat"]), tuple(area["properties"]["centre"])) < 1.0
        assert area["properties"]["name_zh"] and area["properties"]["name_en"]


def test_the_wgs84_layers_are_the_gcj02_ones_shifted_by_the_datum() -> None:
    gcj = {f["properties"]["id"]: f["geometry"]["coordinates"] for f in layer("metro-stations")["features"]}
    for f in layer("metro-stations", "wgs84")["features"]:
        lng, lat = f["geometry"]["coordinates"]
        shifted = wgs84_to_gcj02(lng, lat)
        assert metres(shifted, tuple(gcj[f["properties"]["id"]])) < 0.5
        assert metres((lng, lat), shifted) > 300  # the offset the page must never mix


async def test_the_layers_route_serves_each_layer_and_refuses_unknown_ones() -> None:
    routes = HttpRoutes(None, None)  # type: ignore[arg-type]  # the layer route needs no node nor GTFS feed

    async def get(path: str) -> Response:
        return await routes.handle(None, Request(path, Headers()))  # type: ignore[arg-type]

    ok = await get("/layers/scenic-areas.geojson?crs=wgs84")
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "application/geo+json"
    assert orjson.loads(ok.body)["crs_name"] == "wgs84"
    assert (await get("/layers/metro-lines.geojson")).body == layer_body("metro-lines", "gcj02")
    missing = await get("/layers/roads.geojson")
    assert missing.status_code == 404 and b"roads" in missing.body
    bad = await get("/layers/districts.geojson?crs=bd09")
    assert bad.status_code == 400 and b"bd09" in bad.body
    page = await get("/static/vendor/maplibre-gl.mjs")  # built by `make map-assets`
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/javascript")
