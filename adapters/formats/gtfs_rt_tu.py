"""``gtfs-rt-tu``: GTFS-Realtime TripUpdates → a vehicle's delay, placed at its next stop.

A TripUpdate has no position, so the record sits at the next stop (from the static feed) and its id is
``trip:<trip_id>``, apart from any GPS-placed vehicle of a VehiclePositions source. The delay is the
feed's own ``delay`` when given, else the predicted time minus the static schedule. Trips missing from the
static feed are kept whenever their next stop is known; only an update that cannot be placed is a reject.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.transit import gtfs_realtime_pb2

from schemas import Record

from .common import TTL_MS, ItemError, build, check_in_shanghai, never_raises
from .gtfs_rt_common import entity_bytes, entity_locator, open_feed
from .gtfs_static import GtfsStatic, ScheduledStop
from .items import parse_items
from .result import ParseResult

FEED = "bus"
_STU = gtfs_realtime_pb2.TripUpdate.StopTimeUpdate
_TRIP = gtfs_realtime_pb2.TripDescriptor
_NO_PLACE_TRIPS = {_TRIP.CANCELED, getattr(_TRIP, "DELETED", -1)}


def service_day_start(service_date: date, zone: ZoneInfo) -> datetime:
    """GTFS times count from noon minus 12 h on the service day (differs from midnight on DST days)."""
    noon = datetime(service_date.year, service_date.month, service_date.day, 12, tzinfo=zone)
    return noon - timedelta(hours=12)


def scheduled_epoch_s(seconds: int, service_date: date, zone: ZoneInfo) -> int:
    return int((service_day_start(service_date, zone) + timedelta(seconds=seconds)).timestamp())


def _zone(static: GtfsStatic) -> ZoneInfo:
    try:
        return ZoneInfo(static.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _event_time(update: gtfs_realtime_pb2.TripUpdate.StopTimeUpdate) -> tuple[str, int] | None:
    for kind in ("arrival", "departure"):
        if update.HasField(kind) and getattr(update, kind).time:
            return kind, int(getattr(update, kind).time)
    return None


def next_stop(trip_update: gtfs_realtime_pb2.TripUpdate, now_s: int) -> gtfs_realtime_pb2.TripUpdate.StopTimeUpdate:
    """The first stop the vehicle has not yet left: its predicted time is now or later."""
    candidates = [u for u in trip_update.stop_time_update if u.schedule_relationship != _STU.SKIPPED]
    if not candidates:
        raise ItemError("trip update has no stop time updates")
    for update in candidates:
        event = _event_time(update)
        if event is not None and event[1] >= now_s:
            return update
    timed = [u for u in candidates if _event_time(u) is not None]
    # Everything predicted is in the past: the trip is at (or past) its last predicted stop.
    return timed[-1] if timed else candidates[0]


def _scheduled(static: GtfsStatic | None, trip_id: str, update: _STU) -> ScheduledStop | None:
    if static is None or not trip_id:
        return None
    stops = static.schedule.get(trip_id)
    if not stops:
        return None
    if update.HasField("stop_sequence"):
        return stops.get(update.stop_sequence)
    matches = [s for s in stops.values() if s.stop_id == update.stop_id]
    return matches[0] if len(matches) == 1 else None


def _delay_s(trip_update: gtfs_realtime_pb2.TripUpdate, update: _STU, static: GtfsStatic | None) -> int | None:
    for kind in ("arrival", "departure"):
        if update.HasField(kind) and getattr(update, kind).HasField("delay"):
            return int(getattr(update, kind).delay)
    event = _event_time(update)
    scheduled = _scheduled(static, trip_update.trip.trip_id, update)
    if event is not None and scheduled is not None and static is not None:
        kind, predicted = event
        seconds = scheduled.arrival_s if kind == "arrival" else scheduled.departure_s
        seconds = seconds if seconds is not None else (scheduled.departure_s or scheduled.arrival_s)
        if seconds is not None:
            zone = _zone(static)
            try:
                return _nearest_delay_s(predicted, seconds, trip_update.trip.start_date, zone)
            except ItemError:
                raise
            except (OverflowError, OSError, ValueError) as err:  # how the time functions refuse a time past all
                raise ItemError(f"predicted {kind} time {predicted} is out of range ({err})") from None
    if trip_update.HasField("delay"):
        return int(trip_update.delay)
    return None


def _nearest_delay_s(predicted: int, scheduled_s: int, start_date: str, zone: ZoneInfo) -> int:
    if start_date:
        try:
            service_dates = [datetime.strptime(start_date, "%Y%m%d").date()]
        except ValueError:
            raise ItemError(f"trip start_date {start_date[:20]!r} is not YYYYMMDD") from None
    else:
        # Without a service date, take the day whose schedule lies nearest the prediction.
        today = datetime.fromtimestamp(predicted, zone).date()
        service_dates = [today - timedelta(days=1), today, today + timedelta(days=1)]
    delays = [predicted - scheduled_epoch_s(scheduled_s, d, zone) for d in service_dates]
    return min(delays, key=abs)


def trip_record(
    entity: gtfs_realtime_pb2.FeedEntity,
    header_ts: int,
    *,
    source: str,
    mode: str,
    static: GtfsStatic | None,
    shanghai: bool,
) -> Record | None:
    trip_update = entity.trip_update
    trip = trip_update.trip
    if trip.schedule_relationship in _NO_PLACE_TRIPS:
        return None  # a cancelled trip has no vehicle to show
    seconds = trip_update.timestamp or header_ts
    if not seconds:
        raise ItemError("neither the trip update nor the feed header has a timestamp")
    update = next_stop(trip_update, seconds)
    stop_id = update.stop_id
    if not stop_id:
        scheduled = _scheduled(static, trip.trip_id, update)
        stop_id = scheduled.stop_id if scheduled is not None else ""
    if not stop_id:
        raise ItemError("the next stop has neither a stop_id nor a stop_sequence in the static schedule")
    if static is None:
        raise ItemError(f"cannot place stop {stop_id[:60]!r}: no static GTFS feed configured")
    place = static.stops.get(stop_id)
    if place is None:
        raise ItemError(f"cannot place stop {stop_id[:60]!r}: it is not in the static feed")
    lng, lat = place
    if shanghai:
        check_in_shanghai(lng, lat)
    known = static.trips.get(trip.trip_id) if trip.trip_id else None
    route_id = trip.route_id or (known.route_id if known else None)
    direction = trip.direction_id if trip.HasField("direction_id") else (known.direction_id if known else None)
    vehicle_id = trip_update.vehicle.id or None
    trip_key = trip.trip_id or vehicle_id or entity.id
    observed = seconds * 1000
    return build(
        mode,
        {
            "id": f"trip:{trip_key}",
            "source": source,
            "observed_at": observed,
            "expires_at": observed + TTL_MS[mode],
            "lng": lng,
            "lat": lat,
            "mode": mode,
            "route_id": route_id,
            "trip_id": trip.trip_id or None,
            "direction_id": direction,
            "label": trip_update.vehicle.label or None,
            "vehicle_id": vehicle_id,
            "next_stop_id": stop_id,
            "delay_s": _delay_s(trip_update, update, static),
            "plate": trip_update.vehicle.license_plate or None,
        },
    )


@never_raises(FEED)
def parse(
    data: bytes,
    *,
    source: str,
    received_at_ms: int,
    mode: str = "bus",
    static: GtfsStatic | None = None,
    shanghai: bool = False,
) -> ParseResult:
    result = ParseResult()
    opened = open_feed(data, source=source, received_at_ms=received_at_ms, mode=mode, result=result)
    if opened is None:
        return result
    feed, message = opened
    header_ts = message.header.timestamp

    def one(entity: gtfs_realtime_pb2.FeedEntity, _index: int) -> Record | None:
        if entity.is_deleted or not entity.HasField("trip_update"):
            return None  # deletions and other entity kinds are not trip updates
        return trip_record(entity, header_ts, source=source, mode=feed, static=static, shanghai=shanghai)

    return parse_items(
        message.entity,
        one,
        where=entity_locator,
        original=entity_bytes,
        source=source,
        feed=feed,
        received_at_ms=received_at_ms,
        result=result,
    )
