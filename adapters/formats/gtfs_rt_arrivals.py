"""``gtfs-rt-arrivals``: GTFS-Realtime TripUpdates → one predicted arrival/departure per (trip run, stop).

Unlike ``gtfs-rt-tu``, which places a vehicle at its next stop, this keeps every stop time update: what a
stop's departure board and a journey planner need. An entity is the unit of rejection: a trip update with
one bad stop is one dead letter holding that entity, and none of its stops is kept (half a trip's
predictions would pass for the whole).
"""

from __future__ import annotations

from google.transit import gtfs_realtime_pb2

from schemas import Record

from .common import TTL_MS, ItemError, build, check_in_shanghai, never_raises
from .gtfs_rt_common import check_mode, decode_feed, entity_bytes, entity_locator
from .gtfs_static import GtfsStatic
from .items import parse_items
from .result import ParseResult

FEED = "arrivals"
_STU = gtfs_realtime_pb2.TripUpdate.StopTimeUpdate
_TRIP = gtfs_realtime_pb2.TripDescriptor
_NOTHING_TO_PREDICT = {_TRIP.CANCELED, getattr(_TRIP, "DELETED", -1)}


def arrival_id(trip_id: str, start_date: str, start_time: str, stop_key: str) -> str:
    """The entity of one run's call at one stop: frequency-based trips share a trip id between runs, so
    the run is told apart by its start."""
    return f"{trip_id}/{start_date}/{start_time}/{stop_key}"


def _event(update: _STU, kind: str) -> tuple[int | None, int | None]:
    """(predicted epoch seconds, delay seconds) of the update's arrival or departure, each None if absent."""
    if not update.HasField(kind):
        return None, None
    event = getattr(update, kind)
    moment = int(event.time) if event.HasField("time") and event.time else None
    delay = int(event.delay) if event.HasField("delay") else None
    return moment, delay


def _stop_of(update: _STU, index: int, trip_id: str, static: GtfsStatic | None) -> tuple[str, int | None]:
    sequence = int(update.stop_sequence) if update.HasField("stop_sequence") else None
    stop = update.stop_id
    if not stop and sequence is not None and static is not None:
        scheduled = static.schedule.get(trip_id, {}).get(sequence)
        stop = scheduled.stop_id if scheduled is not None else ""
    if not stop:
        raise ItemError(f"stop_time_update[{index}] has neither a stop_id nor a stop_sequence of the static schedule")
    if static is not None and static.stops and stop not in static.stops:
        raise ItemError(f"stop_time_update[{index}]: stop {stop[:60]!r} is not in the static feed")
    return stop, sequence


def arrival_records(
    entity: gtfs_realtime_pb2.FeedEntity,
    header_ts: int,
    *,
    source: str,
    mode: str,
    static: GtfsStatic | None,
    shanghai: bool,
) -> list[Record] | None:
    """The entity's predictions at the stops still ahead at the update's time (a stop already left is no
    prediction); None for a cancelled trip."""
    trip_update = entity.trip_update
    trip = trip_update.trip
    if trip.schedule_relationship in _NOTHING_TO_PREDICT:
        return None
    if not trip.trip_id:
        raise ItemError("trip update has no trip_id: its stops cannot be matched to the static feed")
    seconds = trip_update.timestamp or header_ts
    if not seconds:
        raise ItemError("neither the trip update nor the feed header has a timestamp")
    if not trip_update.stop_time_update:
        raise ItemError("trip update has no stop time updates")
    known = static.trips.get(trip.trip_id) if static is not None else None
    route_id = trip.route_id or (known.route_id if known else None)
    direction = trip.direction_id if trip.HasField("direction_id") else (known.direction_id if known else None)
    vehicle = trip_update.vehicle
    observed = seconds * 1000
    records: list[Record] = []
    for index, update in enumerate(trip_update.stop_time_update):
        stop, sequence = _stop_of(update, index, trip.trip_id, static)
        relationship = update.schedule_relationship
        if relationship == _STU.NO_DATA:
            continue  # the producer says it knows nothing for this stop
        arrival, arrival_delay = _event(update, "arrival")
        departure, departure_delay = _event(update, "departure")
        skipped = relationship == _STU.SKIPPED
        if not skipped and arrival is None and departure is None and arrival_delay is None and departure_delay is None:
            raise ItemError(f"stop_time_update[{index}] (stop {stop[:60]!r}) has no time and no delay")
        last = departure if departure is not None else arrival
        if last is not None and last < seconds:
            continue  # already left: no longer a prediction
        place = static.stops.get(stop) if static is not None else None
        if place is not None and shanghai:
            check_in_shanghai(*place)
        records.append(
            build(
                FEED,
                {
                    "id": arrival_id(trip.trip_id, trip.start_date, trip.start_time, str(sequence or stop)),
                    "source": source,
                    "observed_at": observed,
                    "expires_at": observed + TTL_MS[FEED],
                    "mode": mode,
                    "trip_id": trip.trip_id,
                    "start_date": trip.start_date or None,
                    "start_time": trip.start_time or None,
                    "route_id": route_id or None,
                    "direction_id": direction,
                    "stop_id": stop,
                    "stop_sequence": sequence,
                    "arrival_at": arrival * 1000 if arrival is not None else None,
                    "departure_at": departure * 1000 if departure is not None else None,
                    "arrival_delay_s": arrival_delay,
                    "departure_delay_s": departure_delay,
                    "skipped": skipped or None,
                    "lng": place[0] if place is not None else None,
                    "lat": place[1] if place is not None else None,
                    "label": vehicle.label or None,
                    "vehicle_id": vehicle.id or None,
                    "plate": vehicle.license_plate or None,
                },
            )
        )
    return records


@never_raises(FEED, mode_is_feed=False)
def parse(
    data: bytes,
    *,
    source: str,
    received_at_ms: int,
    mode: str = "bus",
    static: GtfsStatic | None = None,
    shanghai: bool = False,
) -> ParseResult:
    """``mode`` (bus or metro) says what the trips are; the records go to the ``arrivals`` feed whatever it is."""
    result = ParseResult()
    try:
        check_mode(mode)
        message = decode_feed(data)
    except ItemError as err:
        result.reject(data, source=source, feed=FEED, reason=str(err), received_at_ms=received_at_ms)
        return result
    header_ts = message.header.timestamp

    def one(entity: gtfs_realtime_pb2.FeedEntity, _index: int) -> list[Record] | None:
        if entity.is_deleted or not entity.HasField("trip_update"):
            return None  # deletions, vehicle positions and alerts are not predictions
        return arrival_records(entity, header_ts, source=source, mode=mode, static=static, shanghai=shanghai)

    return parse_items(
        message.entity,
        one,
        where=entity_locator,
        original=entity_bytes,
        source=source,
        feed=FEED,
        received_at_ms=received_at_ms,
        result=result,
    )
