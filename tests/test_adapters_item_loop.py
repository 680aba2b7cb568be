"""One bad item costs exactly one reject, in every format: the item's own bytes go to the dead letter, every other
item of the response still becomes its record.

Each format is checked the same way: a response of good items is parsed, then the same response with one bad
item put somewhere among them; the records must be the same and the bad item must be the one reject.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from google.transit import gtfs_realtime_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.formats import FORMATS, parse_with
from adapters.formats.gtfs_static import GtfsStatic, ScheduledStop, TripInfo

from .adapters_helpers import RECEIVED_AT
from .test_adapters_fuzz import OCPI_EXAMPLE, PARKING, json_values
from .test_adapters_shanghai import documented_example
from .test_ocpi_cdrs import cdr


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # the stdlib keeps integers beyond 64 bits, as JSON allows


@dataclass(frozen=True)
class JsonFormat:
    """How to write a response of a JSON format around a list of items, and a good item to copy."""

    name: str
    good: Callable[[int], Any]  # the i-th good item (distinct ids)
    response: Callable[[list[Any]], Any]
    list_name: str
    bad: Any  # an item this format must reject


def _shanghai(name: str, list_key: str, vary: Callable[[Any, int], Any], bad: dict[str, Any]) -> JsonFormat:
    example = documented_example(name)
    first = example[list_key][0]
    return JsonFormat(
        name,
        good=lambda i: {**first, **vary(first, i)},
        response=lambda items: {**example, list_key: items},
        list_name=list_key,
        bad={**first, **bad},
    )


GEOJSON = cast(dict[str, Any], PARKING[0][1])
GEOJSON_UTM = cast(dict[str, Any], PARKING[1][1])
NGSI = cast(list[dict[str, Any]], PARKING[2][1])


def _feature(document: dict[str, Any], i: int) -> dict[str, Any]:
    feature = json.loads(json.dumps(document["features"][0]))
    feature["id"] = f"p.{i}"
    feature["properties"]["park_id"] = f"P{i}"
    return feature


def _ngsi(i: int) -> dict[str, Any]:
    return {**NGSI[0], "id": f"urn:x:P{i}"}


JSON_FORMATS = [
    _shanghai("sh-bus-gps", "data", lambda item, i: {"obuId": f"{item['obuId']}{i}"}, {"lng": "east"}),
    _shanghai("sh-parking", "data", lambda item, i: {"parkId": f"{item['parkId']}{i}"}, {"parkId": None}),
    _shanghai("sh-charging", "stations", lambda item, i: {"stationId": f"S{i}"}, {"stationId": ["a", "list"]}),
    # Scenic areas are a known list: the copies differ in their counts instead.
    _shanghai("sh-scenic", "list", lambda item, i: {"num": item["num"] + i}, {"code": {"an": "object"}}),
    JsonFormat(
        "ocpi-locations",
        good=lambda i: {**OCPI_EXAMPLE, "id": f"LOC{i}"},
        response=lambda items: {"data": items, "status_code": 1000},
        list_name="data",
        bad={**OCPI_EXAMPLE, "coordinates": {"latitude": "north", "longitude": "3.7"}},
    ),
    JsonFormat(
        "ocpi-cdrs",
        good=lambda i: cdr(f"CDR-{i}"),
        response=lambda items: {"data": items, "status_code": 1000},
        list_name="data",
        bad=cdr("bad", total_energy="N/A"),
    ),
    JsonFormat(
        "parking-geojson",
        good=lambda i: _feature(GEOJSON, i),
        response=lambda items: {**GEOJSON, "features": items},
        list_name="features",
        bad={**_feature(GEOJSON, 99), "geometry": None},
    ),
    JsonFormat(
        "parking-geojson-utm",
        good=lambda i: _feature(GEOJSON_UTM, i),
        response=lambda items: {**GEOJSON_UTM, "features": items},
        list_name="features",
        bad={**_feature(GEOJSON_UTM, 99), "geometry": {"type": "Point", "coordinates": ["x", "y"]}},
    ),
    JsonFormat(
        "parking-ngsi",
        good=_ngsi,
        response=lambda items: items,
        list_name="entities",
        bad={**_ngsi(99), "availableSpotNumber": {"value": "many"}},
    ),
]


def parse_json(fmt: JsonFormat, items: list[Any]) -> Any:
    return parse_with(fmt.name, dumps(fmt.response(items)), source="loop", received_at_ms=RECEIVED_AT)


def check_one_reject(fmt: JsonFormat, good: list[Any], bad: Any, at: int) -> None:
    alone = parse_json(fmt, good)
    assert alone.rejects == [] and len(alone.records) == len(good)
    mixed = parse_json(fmt, [*good[:at], bad, *good[at:]])
    assert mixed.records == alone.records  # every other item survives, unchanged
    (letter,) = mixed.rejects
    assert json.loads(letter.original) == bad  # the item as received, not the whole response
    assert letter.locator == f"{fmt.list_name}[{at}]" and letter.reason and letter.source == "loop"


def test_every_format_is_checked_here():
    assert {f.name for f in JSON_FORMATS} | {"gtfs-rt-vp", "gtfs-rt-tu", "gtfs-rt-arrivals"} == set(FORMATS)


@pytest.mark.parametrize("fmt", JSON_FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("at", [0, 1, 3])
def test_one_bad_json_item_is_one_reject(fmt, at):
    check_one_reject(fmt, [fmt.good(i) for i in range(3)], fmt.bad, at)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(JSON_FORMATS),
    n=st.integers(min_value=1, max_value=4),
    at=st.integers(min_value=0, max_value=4),
    bad=st.one_of(
        json_values.filter(lambda v: not isinstance(v, dict)),  # not an object at all
        st.dictionaries(st.text(max_size=8), json_values, max_size=3),  # an object of nothing this format knows
    ),
)
def test_any_bad_json_item_among_good_ones_is_one_reject(fmt, n, at, bad):
    check_one_reject(fmt, [fmt.good(i) for i in range(n)], bad, min(at, n))


# ------------------------------------------------------------------------------------------ GTFS-Realtime

HEADER_TS = 1_795_000_000


def feed_message(entities: list[gtfs_realtime_pb2.FeedEntity]) -> gtfs_realtime_pb2.FeedMessage:
    message = gtfs_realtime_pb2.FeedMessage()
    message.header.gtfs_realtime_version = "2.0"
    message.header.timestamp = HEADER_TS
    for entity in entities:
        message.entity.add().CopyFrom(entity)
    return message


def vehicle(i: int, *, trip_id: str = "", position: bool = True) -> gtfs_realtime_pb2.FeedEntity:
    entity = gtfs_realtime_pb2.FeedEntity(id=f"e{i}")
    vp = entity.vehicle
    vp.vehicle.id = f"bus-{i}"
    vp.trip.trip_id = trip_id or f"t{i}"
    if position:
        vp.position.latitude, vp.position.longitude = 31.23 + i / 1000, 121.47
    return entity


def trip_update(i: int, *, arrival: int) -> gtfs_realtime_pb2.FeedEntity:
    entity = gtfs_realtime_pb2.FeedEntity(id=f"e{i}")
    tu = entity.trip_update
    tu.trip.trip_id = "t1"
    update = tu.stop_time_update.add(stop_sequence=5, stop_id="s1")
    update.arrival.time = arrival
    return entity


STATIC = GtfsStatic(
    timezone="Asia/Shanghai",
    stops={"s1": (121.47, 31.23)},
    trips={"t1": TripInfo("L1", 1)},
    schedule={"t1": {5: ScheduledStop("s1", 12 * 3600, 12 * 3600)}},
)


class OverflowingTrips(dict[str, TripInfo]):
    """Static trips whose lookup of one trip overflows: it stands for any arithmetic overflow while building one
    vehicle (the VehiclePositions builder reaches none from the wire today, so the static feed is the seam)."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "overflowing":
            raise OverflowError("int too large to convert to float")
        return super().get(key, default)


def check_one_bad_entity(
    name: str, good: list[gtfs_realtime_pb2.FeedEntity], bad: gtfs_realtime_pb2.FeedEntity, at: int, **options: Any
) -> Any:
    def parse(entities: list[gtfs_realtime_pb2.FeedEntity]) -> Any:
        data = feed_message(entities).SerializeToString()
        return parse_with(name, data, source="loop", received_at_ms=RECEIVED_AT, **options)

    alone = parse(good)
    assert alone.rejects == [] and len(alone.records) == len(good)
    mixed = parse([*good[:at], bad, *good[at:]])
    assert mixed.records == alone.records
    (letter,) = mixed.rejects
    assert gtfs_realtime_pb2.FeedEntity.FromString(letter.original) == bad  # the entity, not the whole feed
    assert letter.locator == f"entity[{at}] id={bad.id!r}"
    return letter


@pytest.mark.parametrize("at", [0, 2])
def test_one_vehicle_without_a_position_is_one_reject(at):
    letter = check_one_bad_entity("gtfs-rt-vp", [vehicle(i) for i in range(3)], vehicle(9, position=False), at)
    assert letter.reason == "vehicle has no position"


@pytest.mark.parametrize("count", [3, 80])  # both sides of the batched coordinate pass
def test_an_overflow_in_one_vehicle_is_one_reject(count):
    static = GtfsStatic(trips=OverflowingTrips())
    letter = check_one_bad_entity(
        "gtfs-rt-vp", [vehicle(i) for i in range(count)], vehicle(999, trip_id="overflowing"), 1, static=static
    )
    assert "OverflowError" in letter.reason


def test_one_trip_update_with_no_stop_is_one_reject():
    bad = trip_update(9, arrival=HEADER_TS + 60)
    del bad.trip_update.stop_time_update[:]
    good = [trip_update(i, arrival=HEADER_TS + 60) for i in range(3)]
    letter = check_one_bad_entity("gtfs-rt-tu", good, bad, 1, static=STATIC)
    assert letter.reason == "trip update has no stop time updates"


def test_one_trip_update_beyond_any_calendar_is_one_reject():
    # A predicted time no calendar holds: converting it to a service day fails in the C library.
    good = [trip_update(i, arrival=HEADER_TS + 60) for i in range(3)]
    letter = check_one_bad_entity("gtfs-rt-tu", good, trip_update(9, arrival=2**62), 2, static=STATIC)
    assert "out of range" in letter.reason


@pytest.mark.parametrize("at", [0, 2])
def test_one_trip_update_with_an_unknown_stop_is_one_reject_and_none_of_its_stops_is_kept(at):
    good = [trip_update(i, arrival=HEADER_TS + 60) for i in range(3)]
    bad = trip_update(9, arrival=HEADER_TS + 60)  # its first stop is fine, its second is not
    bad.trip_update.stop_time_update.add(stop_sequence=6, stop_id="nowhere").arrival.time = HEADER_TS + 120
    letter = check_one_bad_entity("gtfs-rt-arrivals", good, bad, at, static=STATIC)
    assert letter.reason == "stop_time_update[1]: stop 'nowhere' is not in the static feed"


@pytest.mark.parametrize("fmt", JSON_FORMATS, ids=lambda f: f.name)
def test_a_rejected_item_keeps_an_integer_beyond_64_bits_exactly(fmt):
    # JSON allows any integer; a decoder that widened it to a float would put a different item in the dead letter.
    check_one_reject(fmt, [fmt.good(i) for i in range(2)], [-(2**63) - 1, 2**64 + 1], 1)
