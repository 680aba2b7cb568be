"""Metro trains on the real network (2017: lines 1–13 and 16, 302 stations), as GTFS-Realtime
VehiclePositions.

Line topology comes from the bundled station data: two neighbouring stations that share a line are
consecutive on it. Each line runs one service between its two ends (Line 4: both ways round the loop;
branching lines 10 and 11: one service from the trunk end to each branch end, at twice the headway).
Trains keep a timetable (run time from distance, dwell at stations, turnback at the ends), in service
05:30–23:00, and report WGS-84 positions as GTFS-Realtime requires.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from google.transit import gtfs_realtime_pb2
from numpy.typing import NDArray

from adapters.simulators import places, profiles
from adapters.simulators import randomness as rnd
from adapters.simulators.beijing import BEIJING, local_date, local_hour
from adapters.simulators.daytypes import day_type
from adapters.simulators.faults import Fault, pick
from adapters.simulators.ragged import RaggedPiecewise

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

HEADWAY_S = {"1": 150, "2": 150, "3": 240, "4": 240, "5": 420, "6": 240, "7": 210, "8": 180, "9": 210,
             "10": 240, "11": 240, "12": 270, "13": 300, "16": 360}  # fmt: skip
CRUISE_MS = 55 / 3.6
ACCEL_LOSS_S = 45.0
DWELL_S = 35.0
TURNBACK_S = 240.0
SERVICE_HOURS = (5.5, 23.0)

_OCCUPANCY = (
    gtfs_realtime_pb2.VehiclePosition.MANY_SEATS_AVAILABLE,
    gtfs_realtime_pb2.VehiclePosition.FEW_SEATS_AVAILABLE,
    gtfs_realtime_pb2.VehiclePosition.STANDING_ROOM_ONLY,
    gtfs_realtime_pb2.VehiclePosition.CRUSHED_STANDING_ROOM_ONLY,
)


@dataclass(frozen=True, slots=True)
class Service:
    line: str
    stations: tuple[str, ...]  # station ids in direction-0 order
    circular: bool
    headway_s: float
    cycle_s: float


def _line_graphs() -> dict[str, dict[str, list[str]]]:
    by_id = {s.station_id: s for s in places.metro_stations()}
    graphs: dict[str, dict[str, list[str]]] = {}
    for s in by_id.values():
        for line in s.lines:
            graph = graphs.setdefault(line, {})
            graph[s.station_id] = [n for n in s.neighbours if n in by_id and line in by_id[n].lines]
    # Two stations can be neighbours on another line they both serve and skip a station of this one (Line 13
    # runs Hanzhong Road - Natural History Museum - West Nanjing Road; Line 12 links the two directly). A line
    # never visits three pairwise neighbouring stations, so in such a triangle the longest edge is the other
    # line's: drop it, or the line's shortest path would skip the station in between.
    for graph in graphs.values():
        for a in sorted(graph):
            for b in sorted(graph[a]):
                for c in sorted(set(graph[a]) & set(graph.get(b, []))):
                    edges = [(a, b), (a, c), (b, c)]
                    x, y = max(edges, key=lambda e: (_distance(by_id[e[0]], by_id[e[1]]), e))
                    if y in graph[x]:
                        graph[x].remove(y)
                        graph[y].remove(x)
    return graphs


def _distance(a: places.MetroStation, b: places.MetroStation) -> float:
    xs, ys = places.to_xy([a.lng, b.lng], [a.lat, b.lat])
    return float(np.hypot(xs[1] - xs[0], ys[1] - ys[0]))


def _bfs_path(graph: dict[str, list[str]], a: str, b: str) -> list[str]:
    previous: dict[str, str | None] = {a: None}
    queue = deque([a])
    while queue:
        node = queue.popleft()
        if node == b:
            break
        for n in graph.get(node, []):
            if n not in previous:
                previous[n] = node
                queue.append(n)
    if b not in previous:
        return []
    path = [b]
    while (p := previous[path[-1]]) is not None:
        path.append(p)
    return path[::-1]


def _loop(graph: dict[str, list[str]]) -> list[str]:
    start = min(graph)
    path = [start]
    prev = None
    node = start
    while True:
        nexts = [n for n in graph[node] if n != prev]
        if not nexts or nexts[0] == start:
            break
        prev, node = node, nexts[0]
        path.append(node)
        if len(path) > len(graph):
            break
    return path


def route_id(line: str) -> str:
    """The GTFS route of a metro line: ``M`` and the line number, so it never equals a bus line's id."""
    return f"M{line}"


def trip_id(line: str, service_index: int, direction: int) -> str:
    """The frequency-based GTFS trip of a line's ``service_index``-th service (in ``build_services`` order)
    run in ``direction``: every train of a service keeps the same timetable (see ``gtfs_static``)."""
    return f"M{line}-{service_index}-{direction}"


def service_trip_indices(services: list[Service]) -> list[int]:
    """Each service's index among its line's services."""
    seen: dict[str, int] = {}
    out: list[int] = []
    for s in services:
        out.append(seen.get(s.line, 0))
        seen[s.line] = out[-1] + 1
    return out


def build_services() -> list[Service]:
    services: list[Service] = []
    for line, graph in sorted(_line_graphs().items(), key=lambda kv: int(kv[0])):
        headway = float(HEADWAY_S.get(line, 300))
        leaves = sorted(n for n, ns in graph.items() if len(ns) == 1)
        if not leaves:
            loop = _loop(graph)
            services.append(Service(line, tuple(loop), True, headway, 0.0))
            services.append(Service(line, tuple(reversed(loop)), True, headway, 0.0))
            continue
        pairs: set[tuple[str, str]] = set()
        for leaf in leaves:
            lengths = {other: len(_bfs_path(graph, leaf, other)) for other in leaves if other != leaf}
            if lengths:
                far = max(lengths, key=lambda o: (lengths[o], o))
                pairs.add((min(leaf, far), max(leaf, far)))
        for a, b in sorted(pairs):
            path = _bfs_path(graph, a, b)
            if len(path) >= 2:
                services.append(Service(line, tuple(path), False, headway * len(pairs), 0.0))
    return services


class MetroTrains:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        by_id = {s.station_id: s for s in places.metro_stations()}
        geo_breaks: list[FloatArray] = []
        geo_values: list[FloatArray] = []
        tt_breaks: list[FloatArray] = []
        tt_values: list[FloatArray] = []
        seg_dir: list[int] = []
        seg_stop: list[int] = []
        seg_stopped: list[bool] = []
        services: list[Service] = []
        for svc in build_services():
            ids = list(svc.stations) + ([svc.stations[0]] if svc.circular else [])
            xs, ys = places.to_xy([by_id[i].lng for i in ids], [by_id[i].lat for i in ids])
            gaps = np.hypot(np.diff(xs), np.diff(ys))
            cum = np.concatenate([[0.0], np.cumsum(np.maximum(gaps, 1.0))])
            length = float(cum[-1])
            times: list[float] = []
            dists: list[float] = []
            runs = [(0, cum)] if svc.circular else [(0, cum), (1, cum[::-1])]
            t = 0.0
            for direction, stops in runs:
                for k in range(len(stops) - 1):
                    times += [t, t + DWELL_S]
                    dists += [float(stops[k])] * 2
                    seg_dir += [direction, direction]
                    seg_stop += [k, k + 1]
                    seg_stopped += [True, False]
                    t += DWELL_S + ACCEL_LOSS_S + abs(float(stops[k + 1] - stops[k])) / CRUISE_MS
                if not svc.circular:
                    times.append(t)
                    dists.append(float(stops[-1]))
                    seg_dir.append(direction)
                    seg_stop.append(len(stops) - 1)
                    seg_stopped.append(True)
                    t += TURNBACK_S
            times.append(t)
            dists.append(length if svc.circular else 0.0)
            seg_dir.append(0)
            seg_stop.append(0)
            seg_stopped.append(True)
            tt_breaks.append(np.asarray(times))
            tt_values.append(np.asarray(dists))
            geo_breaks.append(cum)
            geo_values.append(np.column_stack([xs, ys]))
            services.append(Service(svc.line, svc.stations, svc.circular, svc.headway_s, t))
        self.services = services
        self.service_index = service_trip_indices(services)
        self.geometry = RaggedPiecewise(geo_breaks, geo_values)
        self.timetable = RaggedPiecewise(tt_breaks, tt_values)
        self.seg_dir = np.asarray(seg_dir, dtype=np.int64)
        self.seg_stop = np.asarray(seg_stop, dtype=np.int64)
        self.seg_stopped = np.asarray(seg_stopped, dtype=bool)
        counts = [max(1, round(s.cycle_s / s.headway_s)) for s in services]
        self.service_of = np.repeat(np.arange(len(services)), counts).astype(np.int64)
        rank = np.concatenate([np.arange(n) for n in counts])
        # Train numbers run per line, not per service: a line with two services (the Line 4 loop both ways,
        # the branches of lines 10 and 11) must not have two trains with the same id.
        line_base: dict[str, int] = {}
        numbers: list[int] = []
        for service, n in zip(services, counts, strict=True):
            base = line_base.get(service.line, 0)
            numbers.extend(range(base, base + n))
            line_base[service.line] = base + n
        cycles = np.array([s.cycle_s for s in services])
        self.cycle = cycles[self.service_of]
        self.phase = rank / np.array(counts)[self.service_of] * self.cycle
        self.size = int(self.service_of.size)
        self.train_ids = [
            f"L{services[s].line.zfill(2)}-T{n:03d}" for s, n in zip(self.service_of, numbers, strict=True)
        ]

    def in_service(self, t_s: int) -> bool:
        hour = float(local_hour(t_s))
        return SERVICE_HOURS[0] <= hour < SERVICE_HOURS[1]

    def feed(self, t_s: int, fault: Fault | None, salt: int) -> tuple[bytes, dict[str, int]]:
        """A GTFS-Realtime VehiclePositions FeedMessage at ``t_s`` with ``fault`` applied."""
        skew = fault.jump_s if fault is not None and fault.kind == "time_jump" else 0
        message = gtfs_realtime_pb2.FeedMessage()
        message.header.gtfs_realtime_version = "2.0"
        message.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
        message.header.timestamp = t_s + skew
        injected: dict[str, int] = {}
        if not self.in_service(t_s):
            return message.SerializeToString(), injected
        train = np.arange(self.size)
        svc = self.service_of
        progress = np.mod(t_s + self.phase, self.cycle)
        dist_rows, seg, _ = self.timetable.evaluate(svc, progress)
        rate = self.timetable.slope(seg)[:, 0]
        xy, gseg, _ = self.geometry.evaluate(svc, dist_rows[:, 0])
        heading = self.geometry.slope(gseg)
        heading = np.where((rate < 0)[:, None], -heading, heading)
        bearing = np.mod(np.degrees(np.arctan2(heading[:, 0], heading[:, 1])), 360.0)
        lng, lat = places.to_lnglat(xy[:, 0], xy[:, 1])
        trip_no = np.floor_divide(t_s + self.phase, self.cycle).astype(np.int64)
        hours = float(local_hour(t_s))
        demand = float(profiles.curve_at(profiles.BUS_DEMAND[day_type(local_date(t_s))], hours))
        load = demand * (0.8 + 0.5 * rnd.uniform(self.seed, 600, train, trip_no))
        occupancy = np.clip((load * 4).astype(np.int64), 0, 3)
        start_date = _local_yyyymmdd(t_s)
        entities = []
        for i in range(self.size):
            s = self.services[int(svc[i])]
            k = int(seg[i])
            direction = int(self.seg_dir[k])
            order = s.stations if direction == 0 else s.stations[::-1]
            stop_index = int(self.seg_stop[k]) % len(order)
            entity = gtfs_realtime_pb2.FeedEntity()
            entity.id = self.train_ids[i]
            v = entity.vehicle
            v.trip.trip_id = trip_id(s.line, self.service_index[int(svc[i])], direction)
            v.trip.route_id = route_id(s.line)
            v.trip.direction_id = direction
            v.trip.start_date = start_date
            v.vehicle.id = self.train_ids[i]
            v.vehicle.label = f"{s.line}号线 {self.train_ids[i][-4:]}"
            v.position.latitude = float(lat[i])
            v.position.longitude = float(lng[i])
            v.position.bearing = float(bearing[i])
            v.position.speed = float(abs(rate[i]))
            v.current_stop_sequence = stop_index + 1
            v.stop_id = order[stop_index]
            v.current_status = (
                gtfs_realtime_pb2.VehiclePosition.STOPPED_AT
                if self.seg_stopped[k]
                else gtfs_realtime_pb2.VehiclePosition.IN_TRANSIT_TO
            )
            v.timestamp = t_s + skew
            v.occupancy_status = _OCCUPANCY[int(occupancy[i])]
            entities.append(entity)
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
                bad = gtfs_realtime_pb2.FeedEntity()
                bad.CopyFrom(entities[i])
                if n % 3 == 0:
                    bad.vehicle.position.latitude = 999.0
                elif n % 3 == 1:
                    bad.vehicle.ClearField("position")
                else:
                    # A receiver that lost its fix reports NaN; an empty entity id alone would still be a
                    # valid vehicle (its descriptor carries the id), so it would not be garbage.
                    bad.vehicle.position.longitude = float("nan")
                entities.insert(i + 1, bad)
            injected["garbage_records"] = len(chosen)
        message.entity.extend(entities)
        return message.SerializeToString(), injected


def _local_yyyymmdd(t_s: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t_s, BEIJING).strftime("%Y%m%d")
