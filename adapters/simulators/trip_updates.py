"""GTFS-Realtime TripUpdates of the simulated buses and metro trains: each vehicle's predicted arrival and
departure at the stops ahead of it on its current run, derived from where it is along its trip.

The ids are the static feed's (``gtfs_export``): each line and direction is one frequency-based trip, so a
vehicle's run is told apart by ``start_date`` and ``start_time`` (when it left the first stop, constant for
the run), and its stops by ``stop_sequence`` (1-based, in travel order) and ``stop_id``. Predictions follow the
vehicle's own timetable from its position: a bus at its own speed through the congestion ahead (the same
curve that moves it), a train at the line's run and dwell times. Stops within ``HORIZON_S`` of the moment,
at most ``MAX_STOPS`` per vehicle, are predicted: about what a passenger information system shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from google.transit import gtfs_realtime_pb2
from numpy.typing import NDArray

from adapters.simulators import profiles
from adapters.simulators.beijing import BEIJING, OFFSET_S
from adapters.simulators.bus import BusFleet
from adapters.simulators.bus_routes import stop_id, trip_id
from adapters.simulators.faults import Fault, pick
from adapters.simulators.gtfs_export import _run_times
from adapters.simulators.metro import MetroTrains
from adapters.simulators.metro import route_id as metro_route_id
from adapters.simulators.metro import trip_id as metro_trip_id

FloatArray = NDArray[np.float64]

HORIZON_S = 1_200
MAX_STOPS = 8
_TOLERANCE_M = 0.01
# A run starting before this local hour belongs to the previous service day (night lines run to 05:00).
_SERVICE_DAY_CUTOFF_H = 4


@dataclass(frozen=True, slots=True)
class RunTimes:
    """One direction of a vehicle's cycle: the timetable second (within the cycle) of each stop's arrival
    and departure, in travel order."""

    arrivals: FloatArray
    departures: FloatArray


def _bus_runs(fleet: BusFleet, r: int) -> tuple[RunTimes, RunTimes]:
    """Both directions of route ``r``, on the same spans and stop positions as the static feed's."""
    net = fleet.network
    tt = net.timetable
    route = net.routes[r]
    lo, hi = int(tt.starts[r]), int(tt.ends[r])
    times = tt.keys[lo:hi] - tt.offsets[r]
    dist = tt.values[lo:hi, 0]
    dirs = net.segment_direction[lo:hi]
    first_back = int(np.flatnonzero(dirs == 1)[0])
    last_back = int(np.flatnonzero(dirs == 1)[-1])
    forward = np.asarray(route.stop_distances)
    runs: list[RunTimes] = []
    for d in (0, 1):
        if d == 0:
            span, along, at = slice(0, first_back + 1), dist[: first_back + 1], forward
        else:
            span = slice(first_back, last_back + 2)
            along, at = route.length_m - dist[span], route.length_m - forward[::-1]
        t = times[span]
        start = float(t[along <= at[0] + _TOLERANCE_M].max())  # leaving the first stop
        pairs = _run_times(t, along, list(at))
        runs.append(RunTimes(np.array([a for a, _ in pairs]) + start, np.array([b for _, b in pairs]) + start))
    return runs[0], runs[1]


def _metro_runs(trains: MetroTrains, i: int) -> dict[int, RunTimes]:
    """Each direction a service runs, read off its timetable knots (arrive, dwell, leave)."""
    tt = trains.timetable
    lo, hi = int(tt.starts[i]), int(tt.ends[i])
    times = (tt.keys[lo:hi] - tt.offsets[i]).tolist()
    dirs = trains.seg_dir[lo:hi].tolist()
    stopped = trains.seg_stopped[lo:hi].tolist()
    events: dict[int, list[tuple[float, float]]] = {}
    for j in range(len(times) - 1):  # the last knot is the end of the cycle: the next one's start
        if stopped[j]:
            leave = times[j + 1] if not stopped[j + 1] else times[j]
            events.setdefault(dirs[j], []).append((times[j], leave))
    if trains.services[i].circular:  # back at the first station, which closes the loop
        events[0].append((times[-1], times[-1]))
    return {d: RunTimes(np.array([a for a, _ in e]), np.array([b for _, b in e])) for d, e in events.items()}


def _ahead(run: RunTimes, progress: float) -> NDArray[np.int64]:
    """The stops of ``run`` the vehicle has not left yet at ``progress`` (the one it stands at included)."""
    return np.flatnonzero(run.departures >= progress)


def _within(
    ahead: NDArray[np.int64], arrivals: FloatArray, departures: FloatArray, now_s: float
) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """The stops predicted: the next one always, the others while within the horizon, at most ``MAX_STOPS``."""
    keep = arrivals <= now_s + HORIZON_S
    keep[0] = True
    return ahead[keep][:MAX_STOPS], arrivals[keep][:MAX_STOPS], departures[keep][:MAX_STOPS]


def _gtfs_start(epoch_s: int) -> tuple[str, str]:
    """(start_date YYYYMMDD, start_time HH:MM:SS) of a run leaving its first stop at ``epoch_s``: times after
    midnight of a run begun late the day before count past 24:00 of that service day, as GTFS writes them."""
    from datetime import datetime, timedelta

    local = datetime.fromtimestamp(epoch_s, BEIJING)
    day = local.date()
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    if local.hour < _SERVICE_DAY_CUTOFF_H:
        day -= timedelta(days=1)
        seconds += 86_400
    return day.strftime("%Y%m%d"), f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TripUpdates:
    """The TripUpdates feeds of a fleet (``bus``) and the metro (``metro``)."""

    def __init__(self, fleet: BusFleet, trains: MetroTrains) -> None:
        self.fleet = fleet
        self.trains = trains
        self._bus_runs: dict[int, tuple[RunTimes, RunTimes]] = {}
        self._metro_runs = [_metro_runs(trains, i) for i in range(len(trains.services))]

    def bus_runs(self, r: int) -> tuple[RunTimes, RunTimes]:
        runs = self._bus_runs.get(r)
        if runs is None:
            runs = self._bus_runs[r] = _bus_runs(self.fleet, r)
        return runs

    # ----------------------------------------------------------------------------------------------- bus

    def bus_entities(self, t_s: int) -> list[gtfs_realtime_pb2.FeedEntity]:
        fleet = self.fleet
        snap = fleet.snapshot(t_s)
        entities: list[gtfs_realtime_pb2.FeedEntity] = []
        obu, vehicle_no, _plate = fleet._labels
        for b, r, report, d in zip(
            snap.bus.tolist(), snap.route.tolist(), snap.report_s.tolist(), snap.direction.tolist(), strict=True
        ):
            factor = float(fleet.speed_factor[b])
            cycle = float(fleet.cycle[b])
            # The bus's progress clock at its last fix, and where that puts it in its cycle (as ``snapshot``).
            warped = float(profiles.warped_seconds(report + OFFSET_S)) * factor + float(fleet.phase[b])
            laps = np.floor(warped / cycle)
            progress = warped - laps * cycle
            run = self.bus_runs(r)[d]
            ahead = _ahead(run, progress)
            if ahead.size == 0:
                continue  # laying over at the terminal: no stop ahead on this run
            # Timetable seconds ahead → warped seconds at this bus's speed → real seconds through congestion.
            base = laps * cycle - float(fleet.phase[b])
            arrivals = profiles.real_seconds((base + run.arrivals[ahead]) / factor) - OFFSET_S
            departures = profiles.real_seconds((base + run.departures[ahead]) / factor) - OFFSET_S
            ahead, arrivals, departures = _within(ahead, arrivals, departures, report)
            start = int(np.floor(profiles.real_seconds((base + run.departures[0]) / factor) - OFFSET_S + 1e-6))
            line = fleet.line_ids[r]
            entity = gtfs_realtime_pb2.FeedEntity()
            entity.id = obu[b]
            tu = entity.trip_update
            tu.trip.trip_id = trip_id(line, d)
            tu.trip.route_id = line
            tu.trip.direction_id = d
            tu.trip.start_date, tu.trip.start_time = _gtfs_start(start)
            tu.vehicle.id = obu[b]
            tu.vehicle.label = vehicle_no[b]
            tu.timestamp = int(report)
            for k, arrive, leave in zip(ahead.tolist(), arrivals.tolist(), departures.tolist(), strict=True):
                stu = tu.stop_time_update.add()
                stu.stop_sequence = k + 1
                stu.stop_id = stop_id(line, d, k)
                if arrive >= report:  # a stop the bus is already at has only its departure ahead
                    stu.arrival.time = round(arrive)
                stu.departure.time = max(round(leave), round(arrive))
            entities.append(entity)
        return entities

    # --------------------------------------------------------------------------------------------- metro

    def metro_entities(self, t_s: int) -> list[gtfs_realtime_pb2.FeedEntity]:
        trains = self.trains
        if not trains.in_service(t_s):
            return []
        entities: list[gtfs_realtime_pb2.FeedEntity] = []
        svc_of = trains.service_of
        progress_all = np.mod(t_s + trains.phase, trains.cycle)
        _, seg, _ = trains.timetable.evaluate(svc_of, progress_all)
        for i in range(trains.size):
            s = int(svc_of[i])
            service = trains.services[s]
            d = int(trains.seg_dir[int(seg[i])])
            run = self._metro_runs[s].get(d)
            if run is None:
                continue
            cycle = float(trains.cycle[i])
            lap_start = float(np.floor((t_s + trains.phase[i]) / cycle)) * cycle - float(trains.phase[i])
            progress = float(progress_all[i])
            ahead = _ahead(run, progress)
            if ahead.size == 0:
                continue  # turning back at the terminus
            ahead, arrivals, departures = _within(
                ahead, lap_start + run.arrivals[ahead], lap_start + run.departures[ahead], t_s
            )
            order = list(service.stations) + ([service.stations[0]] if service.circular else [])
            order = order if d == 0 else order[::-1]
            entity = gtfs_realtime_pb2.FeedEntity()
            entity.id = trains.train_ids[i]
            tu = entity.trip_update
            tu.trip.trip_id = metro_trip_id(service.line, trains.service_index[s], d)
            tu.trip.route_id = metro_route_id(service.line)
            tu.trip.direction_id = d
            tu.trip.start_date, tu.trip.start_time = _gtfs_start(int(np.floor(lap_start + run.departures[0] + 1e-6)))
            tu.vehicle.id = trains.train_ids[i]
            tu.vehicle.label = f"{service.line}号线 {trains.train_ids[i][-4:]}"
            tu.timestamp = t_s
            for k, arrive, leave in zip(ahead.tolist(), arrivals.tolist(), departures.tolist(), strict=True):
                stu = tu.stop_time_update.add()
                stu.stop_sequence = k + 1
                stu.stop_id = order[k]
                if arrive >= t_s:
                    stu.arrival.time = round(arrive)
                stu.departure.time = max(round(leave), round(arrive))
            entities.append(entity)
        return entities

    # -------------------------------------------------------------------------------------------- serving

    def bus_feed(self, t_s: int, fault: Fault | None, salt: int) -> tuple[bytes, dict[str, int]]:
        return _feed(self.bus_entities, t_s, fault, salt)

    def metro_feed(self, t_s: int, fault: Fault | None, salt: int) -> tuple[bytes, dict[str, int]]:
        return _feed(self.metro_entities, t_s, fault, salt)


def _corrupt(entity: gtfs_realtime_pb2.FeedEntity, n: int) -> gtfs_realtime_pb2.FeedEntity:
    """A broken copy of ``entity``, three kinds in turn: no trip id, a time past any calendar, a departure
    before the arrival."""
    bad = gtfs_realtime_pb2.FeedEntity()
    bad.CopyFrom(entity)
    bad.id = entity.id + "-x"
    tu = bad.trip_update
    if n % 3 == 0:
        tu.trip.ClearField("trip_id")
    elif n % 3 == 1:
        tu.stop_time_update[0].departure.time = 2**62
    else:
        last = tu.stop_time_update[-1]
        last.arrival.time = last.departure.time + 600
    return bad


def _feed(
    entities_at: Callable[[int], list[gtfs_realtime_pb2.FeedEntity]], t_s: int, fault: Fault | None, salt: int
) -> tuple[bytes, dict[str, int]]:
    skew = fault.jump_s if fault is not None and fault.kind == "time_jump" else 0
    entities = entities_at(t_s)
    message = gtfs_realtime_pb2.FeedMessage()
    message.header.gtfs_realtime_version = "2.0"
    message.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    message.header.timestamp = t_s + skew
    injected: dict[str, int] = {}
    if skew:
        for entity in entities:
            entity.trip_update.timestamp += skew
            for stu in entity.trip_update.stop_time_update:
                for event in (stu.arrival, stu.departure):
                    if event.time:
                        event.time += skew
    if fault is not None and fault.kind == "duplicates":
        chosen = pick(len(entities), fault.rate, salt)
        for i in reversed(chosen):
            copy = gtfs_realtime_pb2.FeedEntity()
            copy.CopyFrom(entities[i])
            entities.insert(i + 1, copy)
        injected["duplicate_records"] = len(chosen)
    elif fault is not None and fault.kind == "garbage" and fault.mode == "records":
        chosen = pick(len(entities), fault.rate, salt)
        for n, i in enumerate(reversed(chosen)):
            entities.insert(i + 1, _corrupt(entities[i], n))
        injected["garbage_records"] = len(chosen)
    message.entity.extend(entities)
    return message.SerializeToString(), injected
