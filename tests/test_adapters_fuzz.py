"""Fuzzing every parser: no input may raise, every item is accounted for, every reject says why."""

from __future__ import annotations

import json
import math
from typing import Any

from google.transit import gtfs_realtime_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.formats import FORMATS, parse_with
from adapters.formats.common import ItemError
from adapters.formats.ocpi_push import PushTarget, apply_push
from adapters.runtime.routing import feed_of
from schemas import decode_kafka, encode_kafka

from .adapters_helpers import RECEIVED_AT
from .test_adapters_shanghai import documented_example


def dumps(value) -> bytes:
    return json.dumps(value).encode()  # the stdlib keeps integers beyond 64 bits, as JSON allows


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "",
            "0",
            "1",
            "-1",
            "1e400",
            "NaN",
            "2026-11-27 13:05:00",
            "2024-06-08T13:25:00Z",
            "gcj02",
            "bd09",
            "wgs84",
            "121.47",
            "31.23",
        ]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def mutate(item: dict, draw_keys: list[str], values: list) -> dict:
    out = dict(item)
    for key, value in zip(draw_keys, values, strict=False):
        if value == "<delete>":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def check_accounting(result, expected_items: int) -> None:
    assert len(result.records) + len(result.rejects) == expected_items
    for letter in result.rejects:
        assert letter.reason and isinstance(letter.original, bytes) and letter.original
    for record in result.records:
        # Everything emitted survives the Kafka codec's validation.
        assert decode_kafka(feed_of(record), encode_kafka(record)) == record


# ---------------------------------------------------------------------------------- any bytes at all


@FUZZ
@given(data=st.binary(max_size=400), name=st.sampled_from(sorted(FORMATS)))
def test_random_bytes_never_raise(data, name):
    result = parse_with(name, data, source="fuzz", received_at_ms=RECEIVED_AT)
    for letter in result.rejects:
        assert letter.reason and letter.source == "fuzz"
    if name.startswith("gtfs-rt"):
        feed = gtfs_realtime_pb2.FeedMessage()
        try:
            feed.ParseFromString(data)
            decodes = feed.header.HasField("gtfs_realtime_version")
        except Exception:
            decodes = False
        if not decodes:
            assert [r.original for r in result.rejects] == [data]
    else:
        try:
            json.loads(data)
        except ValueError:
            # Not JSON: the whole response is one reject, kept byte for byte.
            assert result.records == [] and [r.original for r in result.rejects] == [data]


@FUZZ
@given(value=json_values, name=st.sampled_from([n for n in sorted(FORMATS) if not n.startswith("gtfs")]))
def test_any_json_document_never_raises(value, name):
    result = parse_with(name, dumps(value), source="fuzz", received_at_ms=RECEIVED_AT)
    assert all(r.reason for r in result.rejects)


# ------------------------------------------------------------------- structured: mutated valid items

SHANGHAI = [("sh-bus-gps", "data"), ("sh-parking", "data"), ("sh-charging", "stations"), ("sh-scenic", "list")]


@FUZZ
@given(
    which=st.sampled_from(SHANGHAI),
    mutations=st.lists(st.tuples(st.text(min_size=1, max_size=14), json_values | st.just("<delete>")), max_size=4),
    pick_real_keys=st.lists(st.integers(min_value=0, max_value=30), max_size=4),
    copies=st.integers(min_value=1, max_value=4),
)
def test_mutated_shanghai_items_are_each_a_record_or_a_reject(which, mutations, pick_real_keys, copies):
    name, list_key = which
    example = documented_example(name)
    good = example[list_key][0]
    keys = sorted(good)
    items = [good]
    for _ in range(copies):
        chosen = [keys[i % len(keys)] for i in pick_real_keys] + [k for k, _ in mutations]
        values = [v for _, v in mutations] * 2
        items.append(mutate(good, chosen, values[: len(chosen)] or [None] * len(chosen)))
    example[list_key] = items
    result = parse_with(name, dumps(example), source="fuzz", received_at_ms=RECEIVED_AT)
    check_accounting(result, len(items))
    assert result.records and result.records[0].id == str(
        good.get("obuId") or good.get("parkId") or good.get("stationId") or good.get("code")
    )
    for letter in result.rejects:
        assert letter.locator and letter.locator.startswith(f"{list_key}[")


@FUZZ
@given(
    lat=st.floats(width=32) | st.just(math.nan),
    lng=st.floats(width=32),
    timestamp=st.integers(min_value=0, max_value=2**64 - 1),
    bearing=st.none() | st.floats(width=32),
    speed=st.none() | st.floats(width=32),
    occupancy_pct=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    vehicle_id=st.text(max_size=200),
    n=st.integers(min_value=1, max_value=5),
)
def test_structured_gtfs_rt_vehicle_positions(lat, lng, timestamp, bearing, speed, occupancy_pct, vehicle_id, n):
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = 1_700_000_000
    for i in range(n):
        entity = feed.entity.add(id=f"e{i}")
        vp = entity.vehicle
        vp.position.latitude, vp.position.longitude = lat, lng
        vp.timestamp = timestamp
        vp.vehicle.id = vehicle_id
        if bearing is not None:
            vp.position.bearing = bearing
        if speed is not None:
            vp.position.speed = speed
        if occupancy_pct is not None:
            vp.occupancy_percentage = occupancy_pct
    for mode in ("bus", "metro"):
        result = parse_with(
            "gtfs-rt-vp", feed.SerializeToString(), source="fuzz", received_at_ms=RECEIVED_AT, mode=mode
        )
        check_accounting(result, n)
        for letter in result.rejects:
            assert gtfs_realtime_pb2.FeedEntity.FromString(letter.original).vehicle.vehicle.id == vehicle_id


@FUZZ
@given(
    stop_id=st.sampled_from(["70012", "70261", "nowhere", ""]),
    arrival=st.none() | st.integers(min_value=-(2**40), max_value=2**40),
    delay=st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
    start_date=st.sampled_from(["20231107", "", "2023-11-07", "99999999"]),
    trip_id=st.sampled_from(["124", "no-such-trip", ""]),
)
def test_structured_gtfs_rt_trip_updates(stop_id, arrival, delay, start_date, trip_id):
    from adapters.formats.gtfs_static import GtfsStatic, ScheduledStop, TripInfo

    static = GtfsStatic(
        timezone="America/Los_Angeles",
        stops={"70012": (-122.39, 37.77), "70261": (-121.9, 37.33)},
        trips={"124": TripInfo("L1", 1)},
        schedule={"124": {5: ScheduledStop("70012", 60_000, 60_000)}},
    )
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = 1_699_405_534
    tu = feed.entity.add(id="t").trip_update
    tu.trip.trip_id = trip_id
    tu.trip.start_date = start_date
    stu = tu.stop_time_update.add(stop_sequence=5, stop_id=stop_id)
    if arrival is not None:
        stu.arrival.time = arrival
    if delay is not None:
        stu.arrival.delay = delay
    result = parse_with(
        "gtfs-rt-tu", feed.SerializeToString(), source="fuzz", received_at_ms=RECEIVED_AT, static=static
    )
    check_accounting(result, 1)


def set_path(document: Any, parts: list[str], value: Any) -> None:
    """Set (or delete) a dotted path; a path an earlier mutation removed is left alone."""
    target = document
    for part in parts[:-1]:
        try:
            target = target[int(part)] if part.isdigit() else target[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return
    last = parts[-1]
    if value == "<delete>":
        if isinstance(target, dict):
            target.pop(last, None)
    elif isinstance(target, list) and last.isdigit() and int(last) < len(target):
        target[int(last)] = value
    elif isinstance(target, dict):
        target[last] = value


OCPI_EXAMPLE = {
    "country_code": "BE",
    "party_id": "BEC",
    "id": "LOC1",
    "publish": True,
    "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
    "evses": [
        {
            "uid": "3256",
            "status": "AVAILABLE",
            "connectors": [
                {
                    "id": "1",
                    "standard": "IEC_62196_T2",
                    "power_type": "AC_3_PHASE",
                    "max_voltage": 220,
                    "max_amperage": 16,
                    "last_updated": "2015-03-16T10:10:02Z",
                }
            ],
            "last_updated": "2015-06-28T08:12:01Z",
        }
    ],
    "last_updated": "2015-06-29T20:39:09Z",
}


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(
            st.sampled_from([*OCPI_EXAMPLE, "evses.0", "evses.0.connectors.0", "coordinates"]),
            json_values | st.just("<delete>"),
        ),
        max_size=3,
    ),
    n=st.integers(min_value=1, max_value=3),
)
def test_mutated_ocpi_locations(mutations, n):
    locations = []
    for i in range(n):
        location = json.loads(json.dumps(OCPI_EXAMPLE))
        location["id"] = f"LOC{i}"
        if i:  # the first stays valid
            for path, value in mutations:
                set_path(location, path.split("."), value)
        locations.append(location)
    body = dumps({"data": locations, "status_code": 1000})
    result = parse_with("ocpi-locations", body, source="fuzz", received_at_ms=RECEIVED_AT)
    check_accounting(result, n)
    assert result.records[0].id == "BE*BEC*LOC0"


@FUZZ
@given(
    method=st.sampled_from(["PUT", "PATCH"]),
    level=st.integers(min_value=0, max_value=2),
    body=json_values,
)
def test_ocpi_push_with_any_body_either_applies_or_says_why(method, level, body):
    target = PushTarget("BE", "BEC", "LOC1", "3256" if level >= 1 else None, "1" if level == 2 else None)
    try:
        apply_push(OCPI_EXAMPLE, method, target, body)
    except ItemError as err:
        assert str(err)


PARKING = [
    (
        "parking-geojson",
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": "p.1",
                    "geometry": {"type": "Point", "coordinates": [8.4, 49.0]},
                    "properties": {
                        "parkhaus_name": "X",
                        "gesamte_parkplaetze": 10,
                        "freie_parkplaetze": 3,
                        "echtzeit_status": "OK",
                        "geschlossen": "F",
                        "stand_freieparkplaetze": "2024-11-27T18:39:00Z",
                    },
                }
            ],
        },
    ),
    (
        "parking-geojson-utm",
        {
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25832"}},
            "features": [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [413824.9, 5317088.8]},
                    "properties": {
                        "obs_max": "105",
                        "obs_free": "56",
                        "obs_state": "1",
                        "obs_ts": "2024-06-10 10:20:00",
                        "park_id": "P5",
                    },
                }
            ],
        },
    ),
    (
        "parking-ngsi",
        [
            {
                "id": "urn:x:P1",
                "type": "OffStreetParking",
                "lat": {"type": "Number", "value": 49.4},
                "lon": {"type": "Number", "value": 8.69},
                "totalSpotNumber": {"value": 39},
                "availableSpotNumber": {"value": 1},
                "observationDateTime": {"value": "2024-06-08T13:25:00.000Z"},
            }
        ],
    ),
]


@FUZZ
@given(
    which=st.integers(min_value=0, max_value=2),
    mutations=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "geometry",
                    "properties",
                    "id",
                    "lat",
                    "lon",
                    "totalSpotNumber",
                    "availableSpotNumber",
                    "observationDateTime",
                    "type",
                ]
            ),
            json_values | st.just("<delete>"),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_parking_items(which, mutations):
    name, document = PARKING[which]
    document = json.loads(json.dumps(document))
    items = document["features"] if isinstance(document, dict) else document
    bad = mutate(items[0], [k for k, _ in mutations], [v for _, v in mutations])
    items.append(bad)
    result = parse_with(name, dumps(document), source="fuzz", received_at_ms=RECEIVED_AT)
    check_accounting(result, 2)
    assert result.records[0].source == "fuzz"
