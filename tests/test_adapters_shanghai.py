"""The Shanghai JSON formats: the documented examples parse, coordinates become WGS-84, bad items are rejects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import settings
from adapters.formats import parse_with
from geo.crs import bd09_to_wgs84, gcj02_to_wgs84
from schemas import ChargingStation, ParkingLot, ScenicCount, VehiclePosition

from .adapters_helpers import RECEIVED_AT

SOURCES_DOC = Path(settings.PROJECT_ROOT) / "docs" / "sources.md"


def documented_example(format_name: str) -> dict:
    """The JSON example under the format's heading in docs/sources.md."""
    text = SOURCES_DOC.read_text(encoding="utf-8")
    section = text.split(f"## `{format_name}`", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block, f"no JSON example for {format_name} in docs/sources.md"
    return json.loads(block.group(1))


def parse(format_name: str, payload: object):
    return parse_with(format_name, json.dumps(payload).encode(), source="sh-test", received_at_ms=RECEIVED_AT)


def test_bus_gps_example():
    example = documented_example("sh-bus-gps")
    result = parse("sh-bus-gps", example)
    assert result.rejects == []
    (bus,) = result.records
    item = example["data"][0]
    assert isinstance(bus, VehiclePosition)
    assert (bus.lng, bus.lat) == pytest.approx(gcj02_to_wgs84(item["lng"], item["lat"]), abs=1e-9)
    # GCJ-02 is ~500 m off WGS-84 in Shanghai: the conversion really happened.
    assert abs(bus.lng - item["lng"]) > 0.003
    assert bus.id == bus.vehicle_id == item["obuId"] and bus.label == item["vehicleNo"]
    assert bus.route_id == item["lineId"] and bus.direction_id == 0
    assert bus.plate == item["plate"] and bus.driver_id == item["driverNo"]
    assert bus.occupancy_pct == 54 and bus.occupancy_status == "FEW_SEATS_AVAILABLE"
    assert bus.observed_at == 1795755898000  # 2026-11-27 13:04:58 Beijing = 05:04:58 UTC
    assert bus.expires_at > bus.observed_at and bus.seq == item["seq"]


def test_bus_in_bd09_and_wgs84_and_angle_360():
    example = documented_example("sh-bus-gps")
    base = example["data"][0]
    example["data"] = [
        {**base, "obuId": "A", "coordType": "bd09", "angle": 360},
        {**base, "obuId": "B", "coordType": "wgs84"},
    ]
    a, b = parse("sh-bus-gps", example).records
    assert (a.lng, a.lat) == pytest.approx(bd09_to_wgs84(base["lng"], base["lat"]), abs=1e-9)
    assert a.bearing == 0.0
    assert (b.lng, b.lat) == (base["lng"], base["lat"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"lng": 0.0, "lat": 0.0}, "outside Shanghai"),
        ({"lng": 31.23, "lat": 121.47}, "outside"),  # swapped
        ({"coordType": "mercator"}, "unknown coordinate system"),
        ({"gpsTime": "yesterday"}, "gpsTime"),
        ({"speed": -3}, "speed_kmh"),
        ({"obuId": None}, "missing obuId"),
        ({"lat": "north"}, "lat"),
        ({"loadRate": 150}, "occupancy_pct"),
    ],
)
def test_bad_bus_items_are_rejected_alone_with_a_reason(change, reason):
    example = documented_example("sh-bus-gps")
    good = example["data"][0]
    bad = {**good, **change, "obuId": change.get("obuId", "BAD")}
    example["data"] = [good, bad]
    result = parse("sh-bus-gps", example)
    assert [r.id for r in result.records] == [good["obuId"]]
    (letter,) = result.rejects
    assert reason in letter.reason and letter.locator == "data[1]" and letter.feed == "bus"
    assert json.loads(letter.original) == bad


def test_upstream_error_code_rejects_the_whole_response():
    body = json.dumps({"code": 500, "msg": "数据库忙", "data": []}).encode()
    result = parse_with("sh-bus-gps", body, source="s", received_at_ms=RECEIVED_AT)
    (letter,) = result.rejects
    assert letter.original == body and "500" in letter.reason and letter.locator is None


def test_parking_example():
    example = documented_example("sh-parking")
    (lot,) = parse("sh-parking", example).records
    item = example["data"][0]
    assert isinstance(lot, ParkingLot)
    assert (lot.lng, lot.lat) == pytest.approx(bd09_to_wgs84(item["lng"], item["lat"]), abs=1e-9)
    assert (lot.id, lot.capacity, lot.free, lot.kind, lot.status) == ("SHP-00042", 620, 133, "shopping", "open")


def test_parking_more_free_than_capacity_is_rejected():
    example = documented_example("sh-parking")
    example["data"][0]["freeSpace"] = 700
    result = parse("sh-parking", example)
    assert result.records == [] and "exceed capacity" in result.rejects[0].reason


def test_charging_example_statuses_and_privacy():
    example = documented_example("sh-charging")
    example["stations"].append({**example["stations"][0], "stationId": "HOME-1", "isPublic": 0})
    public, home = parse("sh-charging", example).records
    assert isinstance(public, ChargingStation)
    assert public.public is True and home.public is False
    assert [(c.id, c.type, c.status, c.power_kw) for c in public.connectors] == [
        ("SHC-00017-01", "GB_T_DC", "CHARGING", 120.0),
        ("SHC-00017-02", "GB_T_AC", "FAULTED", 7.0),
    ]
    assert public.connectors[1].fault_code == "E21"
    assert public.operator == "特来电"


def test_charging_unknown_status_code_is_a_reject():
    example = documented_example("sh-charging")
    example["stations"][0]["connectors"][0]["status"] = 9
    result = parse("sh-charging", example)
    assert result.records == [] and "status 9" in result.rejects[0].reason
    assert result.rejects[0].locator == "stations[0]"


def test_scenic_example_takes_its_place_from_geo():
    example = documented_example("sh-scenic")
    (area,) = parse("sh-scenic", example).records
    assert isinstance(area, ScenicCount)
    areas = {
        a["code"]: a
        for a in json.loads((Path(settings.PROJECT_ROOT) / "geo/data/scenic_areas.json").read_text())["areas"]
    }
    assert (area.lng, area.lat) == (areas["SCN-YUYUAN"]["lng"], areas["SCN-YUYUAN"]["lat"])
    assert (area.count, area.capacity) == (8231, 30000)
    assert [(z.id, z.count) for z in area.zones or []] == [("SCN-YUYUAN-Z1", 1200)]


def test_scenic_unknown_code_is_a_reject():
    example = documented_example("sh-scenic")
    example["list"][0]["code"] = "SCN-ATLANTIS"
    result = parse("sh-scenic", example)
    assert result.records == [] and "unknown scenic area code" in result.rejects[0].reason


def test_a_whole_number_past_64_bits_is_a_reject_not_a_record_kafka_cannot_take():
    # Found by the fuzzer: a scenic area's maxCapacity of 2**64 made a record that MessagePack refused.
    example = documented_example("sh-scenic")
    example["list"][0]["maxCapacity"] = 18_446_744_073_709_550_592
    result = parse("sh-scenic", example)
    assert not result.records
    (letter,) = result.rejects
    assert "maxCapacity" in letter.reason and "too large" in letter.reason
