"""Every shared real file through its parser: records must match the source, field by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from google.transit import gtfs_realtime_pb2

from adapters.formats.gtfs_static import load_static
from adapters.formats.utm import lnglat_to_utm
from schemas import ChargingStation, ParkingLot, VehiclePosition

from .adapters_helpers import RECEIVED_AT, parse_any, shared


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


# ------------------------------------------------------------------------------------------ GTFS-RT


@pytest.mark.parametrize(
    ("folder", "name", "count"),
    [("caltrain", "ct-vehicle-positions.pb", 14), ("usf_bullrunner", "bullrunner-vehicle-positions.pb", 10)],
)
def test_gtfs_rt_vehicle_positions_match_the_protobuf(folder, name, count):
    data = shared("gtfs_rt", folder, name).read_bytes()
    feed = gtfs_realtime_pb2.FeedMessage.FromString(data)
    result = parse_any("gtfs-rt-vp", data, source=folder, received_at_ms=RECEIVED_AT)
    assert result.rejects == []
    assert len(result.records) == count == len(feed.entity)
    for entity, record in zip(feed.entity, result.records, strict=True):
        vp = entity.vehicle
        assert isinstance(record, VehiclePosition)
        assert record.id == (vp.vehicle.id or entity.id)
        assert record.lat == pytest.approx(vp.position.latitude, abs=1e-5)  # float32 spacing
        assert record.lng == pytest.approx(vp.position.longitude, abs=1e-5)
        assert record.route_id == (vp.trip.route_id or None)
        assert record.trip_id == (vp.trip.trip_id or None)
        assert record.observed_at == (vp.timestamp or feed.header.timestamp) * 1000
        assert record.mode == "bus"


def test_caltrain_positions_agree_with_the_sources_own_json_rendering():
    data = shared("gtfs_rt", "caltrain", "ct-vehicle-positions.pb").read_bytes()
    oracle = json.loads(shared("gtfs_rt", "caltrain", "ct-vehicle-positions.pb.json").read_text())
    records = parse_any("gtfs-rt-vp", data, source="ct", received_at_ms=RECEIVED_AT).records
    expected = {
        e["vehicle"]["vehicle"]["id"]: (e["vehicle"]["position"]["longitude"], e["vehicle"]["position"]["latitude"])
        for e in oracle["entity"]
    }
    # The shortest float32 decimal is exactly what the JSON rendering printed.
    assert {r.id: (r.lng, r.lat) for r in records} == expected
    assert {r.id: r.direction_id for r in records} == {
        e["vehicle"]["vehicle"]["id"]: e["vehicle"]["trip"].get("directionId", 0) for e in oracle["entity"]
    }


def test_bullrunner_bearing_and_occupancy_come_through():
    data = shared("gtfs_rt", "usf_bullrunner", "bullrunner-vehicle-positions.pb").read_bytes()
    feed = gtfs_realtime_pb2.FeedMessage.FromString(data)
    records = parse_any("gtfs-rt-vp", data, source="usf", received_at_ms=RECEIVED_AT, mode="metro").records
    for entity, record in zip(feed.entity, records, strict=True):
        assert record.mode == "metro"
        assert record.bearing == pytest.approx(entity.vehicle.position.bearing % 360)
        status = gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.Name(entity.vehicle.occupancy_status)
        assert record.occupancy_status == status
        assert record.trip_id is None  # frequency-based service: no trip ids, still accepted


def test_caltrain_trip_updates_give_delays_against_the_static_schedule():
    static = load_static(shared("gtfs_rt", "caltrain", "static"))
    data = shared("gtfs_rt", "caltrain", "ct-trip-updates.pb").read_bytes()
    feed = gtfs_realtime_pb2.FeedMessage.FromString(data)
    result = parse_any("gtfs-rt-tu", data, source="ct", received_at_ms=RECEIVED_AT, static=static)
    assert result.rejects == []
    assert len(result.records) == len(feed.entity) == 19
    zone = ZoneInfo("America/Los_Angeles")
    now = feed.header.timestamp
    for entity, record in zip(feed.entity, result.records, strict=True):
        tu = entity.trip_update
        assert record.id == f"trip:{tu.trip.trip_id}"
        assert record.route_id == tu.trip.route_id
        # Recompute independently: the first stop whose predicted time is not yet past.
        updates = [(u, u.arrival.time or u.departure.time) for u in tu.stop_time_update]
        upcoming = [(u, t) for u, t in updates if t >= now] or [updates[-1]]
        update, predicted = upcoming[0]
        assert record.next_stop_id == update.stop_id
        assert (record.lng, record.lat) == static.stops[update.stop_id]
        row = static.schedule[tu.trip.trip_id][update.stop_sequence]
        scheduled_s = row.arrival_s if update.arrival.time else row.departure_s
        assert scheduled_s is not None
        day = datetime.strptime(tu.trip.start_date, "%Y%m%d").replace(hour=12, tzinfo=zone)
        scheduled = day.timestamp() - 12 * 3600 + scheduled_s
        assert record.delay_s == predicted - scheduled
    assert any(r.delay_s and r.delay_s > 0 for r in result.records)  # real late trains in the sample


def test_trip_updates_for_trips_missing_from_static_are_kept():
    static = load_static(shared("gtfs_rt", "caltrain", "static"))
    static.trips.clear()
    static.schedule.clear()  # as if every trip were unknown: positions still come from stops
    data = shared("gtfs_rt", "caltrain", "ct-trip-updates.pb").read_bytes()
    result = parse_any("gtfs-rt-tu", data, source="ct", received_at_ms=RECEIVED_AT, static=static)
    assert len(result.records) == 19 and result.rejects == []
    assert all(r.delay_s is None for r in result.records)  # absolute times only: no schedule, no delay


def test_trip_updates_without_static_become_rejects_with_a_reason():
    data = shared("gtfs_rt", "caltrain", "ct-trip-updates.pb").read_bytes()
    result = parse_any("gtfs-rt-tu", data, source="ct", received_at_ms=RECEIVED_AT)
    assert result.records == [] and len(result.rejects) == 19
    assert all("no static GTFS" in r.reason for r in result.rejects)
    entity = gtfs_realtime_pb2.FeedEntity.FromString(result.rejects[0].original)
    assert entity.trip_update.trip.trip_id == "124"


# --------------------------------------------------------------------------------------------- OCPI

OCPI_LOCATIONS = [
    "location_example.json",
    "location_example_parking_garage_opening_hours.json",
    "location_example_uc2_destination_charger.json",
    "location_example_uc3_destination_charger_not_published.json",
    "location_example_uc4_limited_visibility.json",
    "location_example_uc5_home_charge_point.json",
]

OCPI_STATUS = {
    "AVAILABLE": "AVAILABLE",
    "CHARGING": "CHARGING",
    "RESERVED": "RESERVED",
    "BLOCKED": "OFFLINE",
    "INOPERATIVE": "OFFLINE",
    "OUTOFORDER": "FAULTED",
    "PLANNED": "OFFLINE",
    "UNKNOWN": "UNKNOWN",
}


@pytest.mark.parametrize("name", OCPI_LOCATIONS)
def test_ocpi_location_examples(name):
    path = shared("ocpi", "v2.2.1", name)
    source = json.loads(path.read_text())
    result = parse_any("ocpi-locations", path.read_bytes(), source="ocpi", received_at_ms=RECEIVED_AT)
    assert result.rejects == []
    (station,) = result.records
    assert isinstance(station, ChargingStation)
    assert station.id == f"{source['country_code']}*{source['party_id']}*{source['id']}"
    assert station.lat == float(source["coordinates"]["latitude"])
    assert station.lng == float(source["coordinates"]["longitude"])
    assert station.public is source["publish"]
    expected = [(f"{e['uid']}:{c['id']}", OCPI_STATUS[e["status"]]) for e in source["evses"] for c in e["connectors"]]
    assert [(c.id, c.status) for c in station.connectors] == expected
    assert station.observed_at == _ms(source["last_updated"].replace("Z", "+00:00"))


def test_unpublished_ocpi_locations_are_not_public():
    for name in (
        "location_example_uc3_destination_charger_not_published.json",
        "location_example_uc5_home_charge_point.json",
    ):
        path = shared("ocpi", "v2.2.1", name)
        (station,) = parse_any("ocpi-locations", path.read_bytes(), source="o", received_at_ms=RECEIVED_AT).records
        assert station.public is False


def test_ocpi_power_from_voltage_and_current():
    path = shared("ocpi", "v2.2.1", "location_example.json")
    (station,) = parse_any("ocpi-locations", path.read_bytes(), source="o", received_at_ms=RECEIVED_AT).records
    assert station.connectors[0].type == "TYPE2"
    assert station.connectors[0].power_kw == pytest.approx(220 * 16 * 3 / 1000)


@pytest.mark.parametrize(
    "name",
    [
        "location_energymix_example_simple.json",
        "location_hours_247_open_exception_closing.json",
        "location_regularhours_example.json",
        "location_patch_example_status.json",
    ],
)
def test_ocpi_fragments_are_not_locations_and_say_why(name):
    path = shared("ocpi", "v2.2.1", name)
    result = parse_any("ocpi-locations", path.read_bytes(), source="o", received_at_ms=RECEIVED_AT)
    assert result.records == []
    (letter,) = result.rejects
    assert letter.original == path.read_bytes()
    assert letter.reason


# ------------------------------------------------------------------------------------------ parking


def test_karlsruhe_geojson_matches_every_feature():
    path = shared("parking", "karlsruhe.json")
    features = json.loads(path.read_text())["features"]
    result = parse_any("parking-geojson", path.read_bytes(), source="ka", received_at_ms=RECEIVED_AT)
    assert result.rejects == []
    assert len(result.records) == len(features) == 90
    for feature, lot in zip(features, result.records, strict=True):
        p = feature["properties"]
        assert isinstance(lot, ParkingLot)
        assert lot.id == f"ka:{feature['id']}"
        assert [lot.lng, lot.lat] == feature["geometry"]["coordinates"]
        assert lot.capacity == p["gesamte_parkplaetze"] and lot.free == p["freie_parkplaetze"]
        expected = "closed" if p["geschlossen"] == "T" else "open" if p["echtzeit_status"] == "OK" else "unknown"
        assert lot.status == expected
        stamp = p["stand_freieparkplaetze"] or p["stand_stammdaten"]
        assert lot.observed_at == _ms(stamp.replace("Z", "+00:00"))
    assert sum(lot.free is not None for lot in result.records) == 39


def test_freiburg_utm_points_land_on_the_car_parks():
    path = shared("parking", "freiburg.json")
    features = json.loads(path.read_text())["features"]
    result = parse_any("parking-geojson-utm", path.read_bytes(), source="fr", received_at_ms=RECEIVED_AT)
    assert result.rejects == []
    assert len(result.records) == len(features) == 19
    for feature, lot in zip(features, result.records, strict=True):
        p = feature["properties"]
        easting, northing = feature["geometry"]["coordinates"]
        # Projecting our answer forward gives the source's metres back (to a centimetre) ...
        back = lnglat_to_utm(lot.lng, lot.lat, 32)
        assert back == pytest.approx((easting, northing), abs=0.02)
        # ... and every lot is in Freiburg im Breisgau (city centre 7.85 E, 47.995 N).
        assert 7.75 < lot.lng < 7.95 and 47.95 < lot.lat < 48.05
        assert lot.id == f"fr:{p['park_id']}"
        assert lot.capacity == int(p["obs_max"]) and lot.free == int(p["obs_free"])
        assert lot.status == {"1": "open", "0": "closed"}.get(p["obs_state"], "unknown")
    # obs_ts is Freiburg local time (CEST in June): 10:20 local is 08:20 UTC.
    assert result.records[0].observed_at == int(datetime(2024, 6, 10, 8, 20, tzinfo=UTC).timestamp() * 1000)


def test_heidelberg_ngsi_entities_and_the_three_without_a_position():
    path = shared("parking", "heidelberg.json")
    entities = json.loads(path.read_text())
    result = parse_any("parking-ngsi", path.read_bytes(), source="hd", received_at_ms=RECEIVED_AT)
    placed = [e for e in entities if "lat" in e and "lon" in e]
    assert len(result.records) == len(placed) == 22
    assert {r.locator for r in result.rejects} == {f"entities[{i}]" for i, e in enumerate(entities) if e not in placed}
    assert all("no position" in r.reason for r in result.rejects)
    for entity, lot in zip(placed, result.records, strict=True):
        assert lot.id == f"hd:{entity['id']}"
        assert (lot.lng, lot.lat) == (entity["lon"]["value"], entity["lat"]["value"])
        assert lot.capacity == entity["totalSpotNumber"]["value"]
        assert lot.free == entity.get("availableSpotNumber", {}).get("value")
        assert lot.status == {"Offen": "open"}.get(entity["status"]["value"], "unknown")
