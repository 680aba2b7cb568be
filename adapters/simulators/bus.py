"""The bus fleet: where every bus is at a simulated second, and the ``sh-bus-gps`` records for it.

Positions are a closed-form function of time (see ``bus_routes``), so the fleet has no mutable state:
any simulated second can be asked for, in any order, and always gives the same answer for a seed.
Each bus reports on its own GPS cycle (every 10–20 s), so a record's ``gpsTime`` is the bus's last report
at or before the asked time and its position is where it was then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adapters.simulators import places, profiles
from adapters.simulators import randomness as rnd
from adapters.simulators.beijing import OFFSET_S, format_many, local_date, local_hour
from adapters.simulators.bus_routes import BusNetwork, build_network, stop_id, trip_id
from adapters.simulators.daytypes import day_type
from geo import crs

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

BUSES_PER_ROUTE = 11  # ~17,000 buses on ~1,550 lines, as in Shanghai
COORD_TYPES = ("gcj02", "bd09", "wgs84")

# Random streams (one per kind of draw, so adding a draw never changes the others).
_S_ROUTE, _S_PHASE, _S_SPEED, _S_REPORT, _S_CRS, _S_NOISY, _S_NOISE_X, _S_NOISE_Y = range(8)
_S_JUMP, _S_LOAD, _S_PEAK_ONLY, _S_SPEED_JITTER, _S_PLATE = range(8, 13)


@dataclass(frozen=True, slots=True)
class BusSnapshot:
    """Every in-service bus at one simulated second (arrays aligned by bus)."""

    bus: IntArray  # fleet index
    report_s: IntArray  # epoch seconds of the GPS fix
    seq: IntArray
    lng: FloatArray  # in the bus's own coordinate system (coord_type)
    lat: FloatArray
    wgs_lng: FloatArray  # truth, for tests
    wgs_lat: FloatArray
    coord_type: IntArray  # index into COORD_TYPES
    speed_kmh: FloatArray
    angle: FloatArray
    load_rate: IntArray
    direction: IntArray
    next_stop: IntArray
    route: IntArray


class BusFleet:
    def __init__(self, seed: int, buses: int = 17_000, noisy_share: float = 0.12) -> None:
        if buses < 1:
            raise ValueError(f"need at least one bus, got {buses}")
        self.seed = seed
        self.size = buses
        route_count = max(1, round(buses / BUSES_PER_ROUTE))
        self.network: BusNetwork = build_network(seed, route_count)
        ids = np.arange(buses, dtype=np.int64)
        routes = self.network.routes
        # Every route gets one bus; the rest go to routes in proportion to their popularity.
        popularity = np.array([r.popularity for r in routes])
        extra = np.searchsorted(
            np.cumsum(popularity) / popularity.sum(), rnd.uniform(seed, _S_ROUTE, ids[route_count:]), side="right"
        )
        self.route = np.concatenate([np.arange(min(route_count, buses)), np.minimum(extra, route_count - 1)])
        self.route = self.route.astype(np.int64)
        cycle = np.array([r.cycle_s for r in routes])[self.route]
        # Spread each route's buses evenly over its cycle, with a little irregularity.
        order = np.argsort(self.route, kind="stable")
        rank = np.empty(buses, dtype=np.int64)
        counts = np.bincount(self.route, minlength=route_count)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[order] = np.arange(buses) - np.repeat(starts, counts)
        jitter = rnd.uniform(seed, _S_PHASE, ids) - 0.5
        self.phase = (rank + 0.3 * jitter) / counts[self.route] * cycle
        self.cycle = cycle
        self.speed_factor = 0.9 + 0.2 * rnd.uniform(seed, _S_SPEED, ids)
        self.report_period = np.array([10, 15, 20], dtype=np.int64)[
            (rnd.uniform(seed, _S_REPORT, ids) * 3).astype(np.int64)
        ]
        self.report_phase = (rnd.uniform(seed, _S_REPORT + 100, ids) * self.report_period).astype(np.int64)
        u = rnd.uniform(seed, _S_CRS, ids)
        self.coord_type = np.where(u < 0.55, 0, np.where(u < 0.85, 1, 2)).astype(np.int64)
        self.noise_m = np.where(rnd.uniform(seed, _S_NOISY, ids) < noisy_share, 15.0, 3.0)
        self.peak_only = rnd.uniform(seed, _S_PEAK_ONLY, ids) < 0.15
        self.first_hour = np.array([r.first_hour for r in routes])[self.route]
        self.last_hour = np.array([r.last_hour for r in routes])[self.route]
        self.popularity = popularity[self.route]
        self.line_ids = [r.line_id for r in routes]
        self.line_names = [r.line_name for r in routes]
        self._labels = self._make_labels(ids)

    def _make_labels(self, ids: IntArray) -> tuple[list[str], list[str], list[str]]:
        obu = [f"OBU-{i:06d}" for i in ids.tolist()]
        # Fleet numbers "<company>-<number>", plates 沪D-xxxxx unique by a fixed permutation.
        company = (ids % 9 + 1).tolist()
        vehicle_no = [f"{c:02d}-{(i * 7919) % 10000:04d}" for c, i in zip(company, ids.tolist(), strict=True)]
        plate_numbers = np.random.default_rng([self.seed, _S_PLATE]).permutation(90_000)[: ids.size] + 10_000
        letters = np.where(ids % 5 == 0, "A", "D")
        plate = [f"沪{letter}-{n:05d}" for letter, n in zip(letters.tolist(), plate_numbers.tolist(), strict=True)]
        return obu, vehicle_no, plate

    def in_service(self, t_s: int) -> NDArray[np.bool_]:
        hour = float(local_hour(t_s))
        first, last = self.first_hour, self.last_hour
        wraps = first > last  # night lines
        active = np.where(wraps, (hour >= first) | (hour < last), (hour >= first) & (hour < last))
        workday = day_type(local_date(t_s)) == "workday"
        peak = workday and ((6.5 <= hour < 9.5) or (16.5 <= hour < 19.5))
        return active & (~self.peak_only | peak)

    def snapshot(self, t_s: int) -> BusSnapshot:
        bus = np.flatnonzero(self.in_service(t_s)).astype(np.int64)
        seed = self.seed
        period = self.report_period[bus]
        report = t_s - np.mod(t_s - self.report_phase[bus], period)
        seq = (report - self.report_phase[bus]) // period
        route = self.route[bus]
        warped = profiles.warped_seconds(report + OFFSET_S)
        progress = np.mod(warped * self.speed_factor[bus] + self.phase[bus], self.cycle[bus])
        net = self.network
        dist_rows, seg, _ = net.timetable.evaluate(route, progress)
        dist = dist_rows[:, 0]
        direction = net.segment_direction[seg]
        next_stop = net.segment_next_stop[seg]
        rate = net.timetable.slope(seg)[:, 0]  # metres per warped second, signed
        hours = local_hour(report)
        speed = np.abs(rate) * self.speed_factor[bus] * profiles.congestion_factor(hours) * 3.6
        moving = speed > 0.5
        speed = np.where(moving, np.clip(speed + rnd.normal(seed, _S_SPEED_JITTER, bus, seq), 3.0, 60.0), 0.0)
        xy, gseg, _ = net.geometry.evaluate(route, dist)
        heading = net.geometry.slope(gseg)
        heading = np.where(direction[:, None] == 1, -heading, heading)
        angle = np.mod(np.degrees(np.arctan2(heading[:, 0], heading[:, 1])), 360.0)
        # GPS error: a few metres for most, more for noisy receivers, and rare multipath jumps.
        sigma = self.noise_m[bus]
        jump = rnd.uniform(seed, _S_JUMP, bus, seq) < 0.003
        sigma = np.where(jump, 150.0, sigma)
        x = xy[:, 0] + sigma * rnd.normal(seed, _S_NOISE_X, bus, seq)
        y = xy[:, 1] + sigma * rnd.normal(seed, _S_NOISE_Y, bus, seq)
        wgs_lng, wgs_lat = places.to_lnglat(x, y)
        lng = wgs_lng.copy()
        lat = wgs_lat.copy()
        ctype = self.coord_type[bus]
        for code, name in enumerate(COORD_TYPES[:2]):
            sel = ctype == code
            if sel.any():
                lng[sel], lat[sel] = crs.convert_arrays(wgs_lng[sel], wgs_lat[sel], "wgs84", name)
        load = self._load_rate(bus, route, direction, report, hours)
        return BusSnapshot(
            bus=bus,
            report_s=report,
            seq=seq,
            lng=lng,
            lat=lat,
            wgs_lng=wgs_lng,
            wgs_lat=wgs_lat,
            coord_type=ctype,
            speed_kmh=speed,
            angle=angle,
            load_rate=load,
            direction=direction,
            next_stop=next_stop,
            route=route,
        )

    def _load_rate(
        self, bus: IntArray, route: IntArray, direction: IntArray, report: IntArray, hours: FloatArray
    ) -> IntArray:
        if report.size == 0:
            return np.zeros(0, dtype=np.int64)
        kind = day_type(local_date(int(report[0])))
        demand = profiles.curve_at(profiles.BUS_DEMAND[kind], hours)
        # Tidal flow: direction 0 is the busier one in the morning, direction 1 in the evening.
        tidal = np.where((hours < 12) == (direction == 0), 1.0, 0.7)
        wobble = 1.0 + 0.25 * rnd.smooth_noise(self.seed, _S_LOAD, bus, report / 600.0)
        share = demand * self.popularity[bus] * tidal * wobble
        return np.clip(np.rint(share * 100.0), 0, 100).astype(np.int64)

    def records(self, t_s: int, skew_s: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The ``sh-bus-gps`` ``data`` array at simulated second ``t_s`` (times written ``skew_s`` off),
        and the epoch second of the newest fix in it."""
        snap = self.snapshot(t_s)
        newest = int(snap.report_s.max()) if snap.report_s.size else t_s
        obu, vehicle_no, plate = self._labels
        buses = snap.bus.tolist()
        routes = snap.route.tolist()
        directions = snap.direction.tolist()
        shift = 0 if float(local_hour(t_s)) < 13.0 else 1  # two driver shifts a day
        times = format_many(snap.report_s + skew_s)
        lngs = np.round(snap.lng, 6).tolist()
        lats = np.round(snap.lat, 6).tolist()
        speeds = np.round(snap.speed_kmh, 1).tolist()
        angles = np.mod(np.round(snap.angle, 1), 360.0).tolist()
        ctypes = [COORD_TYPES[c] for c in snap.coord_type.tolist()]
        line_ids = self.line_ids
        line_names = self.line_names
        records = [
            {
                "obuId": obu[b],
                "vehicleNo": vehicle_no[b],
                "plate": plate[b],
                "driverNo": f"D{(b * 2 + shift) % 100_000:05d}",
                "lineId": line_ids[r],
                "lineName": line_names[r],
                "direction": d,
                "lng": x,
                "lat": y,
                "coordType": ct,
                "speed": v,
                "angle": a,
                "gpsTime": tm,
                "loadRate": lr,
                "tripId": trip_id(line_ids[r], d),
                "nextStationId": stop_id(line_ids[r], d, ns),
                "seq": sq,
            }
            for b, r, d, x, y, ct, v, a, tm, lr, ns, sq in zip(
                buses,
                routes,
                directions,
                lngs,
                lats,
                ctypes,
                speeds,
                angles,
                times,
                snap.load_rate.tolist(),
                snap.next_stop.tolist(),
                snap.seq.tolist(),
                strict=True,
            )
        ]
        return records, newest
