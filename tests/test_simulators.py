"""The simulated city's content: deterministic for a seed, plausible for Shanghai, in the documented formats."""

from __future__ import annotations

import orjson
import pytest
from google.transit import gtfs_realtime_pb2

from adapters.simulators import places
from adapters.simulators.beijing import utc_from_local
from adapters.simulators.city import SimulatedCity
from adapters.simulators.parking import KINDS
from adapters.simulators.scenic import ScenicAreas
from geo import crs
from geo.districts import district_of

WORKDAY_1PM = utc_from_local(2026, 11, 27, 13, 5)  # a Friday
SATURDAY_1PM = utc_from_local(2026, 11, 28, 13, 5)


def small_city(seed: int = 7, start_s: int = WORKDAY_1PM) -> SimulatedCity:
    return SimulatedCity(seed, start_ms=start_s * 1000, buses=300, lots=300, connectors=400, monotonic=lambda: 0.0)


@pytest.fixture(scope="module")
def city() -> SimulatedCity:
    return small_city()


def test_same_seed_serves_identical_bytes_and_another_seed_differs(city: SimulatedCity) -> None:
    twin = small_city()
    other = small_city(seed=8)
    for feed in city.feeds:
        assert city.render(feed, WORKDAY_1PM + 30) == twin.render(feed, WORKDAY_1PM + 30), feed
    assert city.render("bus", WORKDAY_1PM) != other.render("bus", WORKDAY_1PM)


def test_answer_does_not_depend_on_how_often_the_city_is_asked() -> None:
    a, b = small_city(), small_city()
    for step in range(0, 1800, 60):
        a.render("charging", WORKDAY_1PM + step)
    assert a.render("charging", WORKDAY_1PM + 1800) == b.render("charging", WORKDAY_1PM + 1800)
    assert a.render("bus", WORKDAY_1PM + 1800) == b.render("bus", WORKDAY_1PM + 1800)


def test_bus_records_follow_the_documented_format(city: SimulatedCity) -> None:
    doc = orjson.loads(city.render("bus", WORKDAY_1PM))
    assert doc["code"] == 0 and isinstance(doc["updateTime"], str) and len(doc["updateTime"]) == 19
    types = {"obuId": str, "vehicleNo": str, "plate": str, "driverNo": str, "lineId": str, "lineName": str,
             "direction": int, "lng": float, "lat": float, "coordType": str, "speed": float, "angle": float,
             "gpsTime": str, "loadRate": int, "tripId": str, "nextStationId": str, "seq": int}  # fmt: skip
    assert len(doc["data"]) > 200
    for rec in doc["data"]:
        assert set(rec) == set(types)
        for key, kind in types.items():
            assert isinstance(rec[key], kind), (key, rec[key])
        assert rec["coordType"] in ("wgs84", "gcj02", "bd09")
        assert 0 <= rec["loadRate"] <= 100 and 0 <= rec["angle"] < 360 and rec["direction"] in (0, 1)
        assert rec["gpsTime"] <= doc["updateTime"]
    assert {r["coordType"] for r in doc["data"]} == {"wgs84", "gcj02", "bd09"}


def test_buses_are_in_shanghai_and_move_at_city_speeds(city: SimulatedCity) -> None:
    snap = city.bus.snapshot(WORKDAY_1PM)
    inside = district_of(snap.wgs_lng, snap.wgs_lat)
    assert (inside != None).mean() > 0.97  # noqa: E711 - numpy elementwise; GPS noise may cross the coast
    assert crs.plausibly_in_shanghai_arrays(snap.lng, snap.lat).all()
    moving = snap.speed_kmh > 0
    assert 0.4 < moving.mean() < 0.9, "buses should both drive and dwell at stops and signals"
    assert 20 < snap.speed_kmh[moving].mean() < 35 and snap.speed_kmh.max() <= 60
    # Average speed over ten minutes, dwell included, from how far each bus actually got along its route.
    later = city.bus.snapshot(WORKDAY_1PM + 600)
    assert 12 < snap.speed_kmh.mean() < 25 and 12 < later.speed_kmh.mean() < 25


def test_served_bus_coordinates_convert_back_to_the_true_position(city: SimulatedCity) -> None:
    snap = city.bus.snapshot(WORKDAY_1PM)
    for code, name in enumerate(("gcj02", "bd09", "wgs84")):
        sel = snap.coord_type == code
        lng, lat = crs.convert_arrays(snap.lng[sel], snap.lat[sel], name, "wgs84")
        assert abs(lng - snap.wgs_lng[sel]).max() < 1e-5 and abs(lat - snap.wgs_lat[sel]).max() < 1e-5


def test_fewer_buses_run_at_night_than_in_the_rush_hour(city: SimulatedCity) -> None:
    at = {h: int(city.bus.in_service(utc_from_local(2026, 11, 27, h)).sum()) for h in (3, 8, 13)}
    assert at[3] < 0.1 * at[8] and at[13] < at[8]


def test_metro_feed_is_gtfs_realtime_on_real_stations(city: SimulatedCity) -> None:
    message = gtfs_realtime_pb2.FeedMessage()
    message.ParseFromString(city.render("metro", WORKDAY_1PM))
    assert message.header.gtfs_realtime_version == "2.0" and message.header.timestamp == WORKDAY_1PM
    stations = {s.station_id for s in places.metro_stations()}
    routes = {e.vehicle.trip.route_id for e in message.entity}
    assert routes == {f"M{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16)}
    assert 300 < len(message.entity) < 1500
    for e in message.entity:
        assert e.vehicle.stop_id in stations
        assert crs.plausibly_in_shanghai(e.vehicle.position.longitude, e.vehicle.position.latitude)
        assert 0 <= e.vehicle.position.speed < 80 / 3.6
    night = gtfs_realtime_pb2.FeedMessage()
    night.ParseFromString(city.render("metro", utc_from_local(2026, 11, 27, 2)))
    assert len(night.entity) == 0


def test_parking_occupancy_stays_within_capacity_and_follows_the_kind(city: SimulatedCity) -> None:
    by_hour = {}
    for hour in (3, 10, 20):
        doc = orjson.loads(city.render("parking", utc_from_local(2026, 11, 27, hour)))
        for rec in doc["data"]:
            assert 0 <= rec["freeSpace"] <= rec["totalSpace"]
            assert rec["status"] in (0, 1, 2) and rec["parkType"] in KINDS
            assert (rec["status"] == 2) == (rec["freeSpace"] == 0 and rec["status"] != 0)
        by_hour[hour] = {
            kind: sum(r["freeSpace"] for r in doc["data"] if r["parkType"] == kind)
            / max(1, sum(r["totalSpace"] for r in doc["data"] if r["parkType"] == kind))
            for kind in ("commuter", "other")
        }
    assert by_hour[10]["commuter"] < by_hour[3]["commuter"], "offices fill up in the morning"
    assert by_hour[3]["other"] < by_hour[10]["other"], "residential car parks are full at night"


def test_charging_status_follows_demand_and_private_piles_are_marked() -> None:
    city = SimulatedCity(3, start_ms=utc_from_local(2026, 11, 27, 0) * 1000, buses=50, lots=20, connectors=3000)
    shares = {}
    for hour in (4, 13):
        statuses = city.charging.statuses(utc_from_local(2026, 11, 27, hour))
        shares[hour] = float((statuses == 3).mean())
        assert set(statuses.tolist()) <= {0, 1, 2, 3, 4, 255}
        assert (statuses == 1).mean() > 0.4, "most connectors are free"
        assert (statuses == 255).mean() < 0.05
    assert shares[4] < shares[13], "more cars charge at midday than before dawn"
    doc = orjson.loads(city.render("charging", utc_from_local(2026, 11, 27, 13)))
    public = [s["isPublic"] for s in doc["stations"]]
    assert 0 in public and public.count(1) > 0.9 * len(public)
    for station in doc["stations"]:
        for conn in station["connectors"]:
            assert conn["connectorType"] in (3, 4) and conn["power"] > 0
            assert ("faultCode" in conn) == (conn["status"] == 255)


def test_scenic_areas_are_busier_at_weekends_and_never_over_capacity() -> None:
    scenic = ScenicAreas(1)
    workday = scenic.counts(WORKDAY_1PM)
    saturday = scenic.counts(SATURDAY_1PM)
    golden_week = scenic.counts(utc_from_local(2026, 10, 3, 13, 5))
    assert workday.sum() < saturday.sum() < golden_week.sum()
    capacity = [a.area.max_capacity for a in scenic.areas]
    for counts in (workday, saturday, golden_week):
        assert all(0 <= n <= cap for n, cap in zip(counts.tolist(), capacity, strict=True))
    assert scenic.counts(utc_from_local(2026, 11, 28, 3)).sum() < 0.05 * saturday.sum()
    records, _ = scenic.records(SATURDAY_1PM)
    for rec in records:
        assert sum(z["num"] for z in rec["zones"]) <= rec["num"]


def test_scenic_data_file_covers_every_district_with_valid_entries() -> None:
    areas = places.scenic_areas()
    assert len(areas) >= 40 and len({a.code for a in areas}) == len(areas)
    assert {a.district_adcode for a in areas} == set(places.DISTRICT_POPULATION_M)
    located = district_of([a.lng for a in areas], [a.lat for a in areas])
    assert list(located) == [a.district_adcode for a in areas]
    assert sum(a.level == "5A" for a in areas) >= 4
