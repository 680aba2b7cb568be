"""Static GTFS for the simulated bus and metro network, built from the very objects the simulators run on.

Every bus of a line keeps the line's timetable (``bus_routes``), and every train of a metro service keeps the
service's (``metro``), so each line and direction is one frequency-based trip (``frequencies.txt``,
``exact_times=0``): ``stop_times.txt`` holds the timetable as run at free-flow speed and ``frequencies.txt``
how often a vehicle starts it, per band of the road-congestion curve for buses (vehicles start more often
where congestion slows them, as in the simulator). Ids are the ones the simulated feeds carry: bus routes are
``lineId``, bus stops ``nextStationId``, bus trips ``tripId``; metro routes ``M<line>``, stops the station
ids, trips ``M<line>-<service>-<direction>`` (``bus_routes.trip_id``, ``metro.trip_id``).

Given the seed, the fleet size and the validity window, the output is byte-for-byte the same.
"""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from adapters.simulators import places, profiles
from adapters.simulators.bus import BusFleet
from adapters.simulators.bus_routes import stop_id, trip_id
from adapters.simulators.metro import ACCEL_LOSS_S, CRUISE_MS, DWELL_S, SERVICE_HOURS, MetroTrains
from adapters.simulators.metro import route_id as metro_route_id
from adapters.simulators.metro import trip_id as metro_trip_id

TIMEZONE = "Asia/Shanghai"
BUS_AGENCY = "SH-BUS"
METRO_AGENCY = "SH-METRO"
SERVICE_ID = "DAILY"
DEFAULT_VALID_DAYS = 365
_TOLERANCE_M = 0.01
# Zip entries get a fixed timestamp so the archive depends on its content only.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class FeedTables:
    """The feed's files: name → (header, rows)."""

    files: dict[str, tuple[list[str], list[list[str]]]]

    def ids(self, name: str, column: str) -> set[str]:
        header, rows = self.files[name]
        index = header.index(column)
        return {row[index] for row in rows}


def gtfs_time(seconds: float) -> str:
    """``H:MM:SS`` (hours may pass 24, as GTFS allows) from seconds after the service day's start."""
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _run_times(times: np.ndarray, along: np.ndarray, stops: Sequence[float]) -> list[tuple[float, float]]:
    """(arrival, departure) at each stop of one run, from the run's timetable knots (time, distance along
    the run, non-decreasing), relative to the departure from the first stop."""
    out: list[tuple[float, float]] = []
    for k, at in enumerate(stops):
        reached = times[along >= at - _TOLERANCE_M]
        before = times[along <= at + _TOLERANCE_M]
        arrival = float(reached.min())
        departure = float(before.max()) if 0 < k < len(stops) - 1 else arrival
        if k == 0:
            arrival = departure = float(before.max())
        out.append((arrival, max(departure, arrival)))
    start = out[0][1]
    return [(a - start, d - start) for a, d in out]


def _whole_seconds(pairs: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Rounded times that never go backwards along the trip."""
    out: list[tuple[int, int]] = []
    last = 0
    for a, d in pairs:
        arrival = max(last, round(a))
        departure = max(arrival, round(d))
        out.append((arrival, departure))
        last = departure
    return out


def _bus_bands(first_h: float, last_h: float) -> list[tuple[float, float, float]]:
    """(start_s, end_s, congestion factor) of the service window split at the congestion curve's breaks;
    night lines (first > last) run past midnight, written as times after 24:00 of the service day."""
    end_h = last_h + 24.0 if first_h > last_h else last_h
    breaks = list(profiles.CONGESTION_BREAKS_H)
    bands: list[tuple[float, float, float]] = []
    for day in (0.0, 24.0):
        for (b0, b1), factor in zip(itertools.pairwise(breaks), profiles.CONGESTION_FACTOR, strict=True):
            lo, hi = max(first_h, b0 + day), min(end_h, b1 + day)
            if hi - lo > 1e-9:
                bands.append((lo * 3600.0, hi * 3600.0, factor))
    return bands


def _lnglat(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    lng, lat = places.to_lnglat(x, y)
    return np.round(lng, 6).tolist(), np.round(lat, 6).tolist()


def build_tables(fleet: BusFleet, metro: MetroTrains, start: date, days: int = DEFAULT_VALID_DAYS) -> FeedTables:
    """The feed's tables for the simulated ``fleet`` and ``metro``, valid for ``days`` days from ``start``."""
    if days < 1:
        raise ValueError(f"the feed must be valid for at least one day, got {days}")
    end = start + timedelta(days=days - 1)
    agency = [
        [BUS_AGENCY, "上海公交 (simulated)", "https://example.org/shanghai-open-feeds/bus", TIMEZONE, "zh"],
        [METRO_AGENCY, "上海地铁 (simulated)", "https://example.org/shanghai-open-feeds/metro", TIMEZONE, "zh"],
    ]
    routes: list[list[str]] = []
    trips: list[list[str]] = []
    stops: list[list[str]] = []
    stop_times: list[list[str]] = []
    shapes: list[list[str]] = []
    frequencies: list[list[str]] = []

    net = fleet.network
    tt = net.timetable
    geo = net.geometry
    for r, route in enumerate(net.routes):
        # Headways count the buses that run all day; a line whose buses all run peak hours only is counted
        # with them (its frequencies then overstate off-peak service: exact_times=0 promises no more).
        on_route = fleet.route == r
        buses = np.flatnonzero(on_route & ~fleet.peak_only)
        if buses.size == 0:
            buses = np.flatnonzero(on_route)
        routes.append([route.line_id, BUS_AGENCY, route.line_id, route.line_name, "3"])
        lo, hi = int(tt.starts[r]), int(tt.ends[r])
        times = tt.keys[lo:hi] - tt.offsets[r]
        dist = tt.values[lo:hi, 0]
        dirs = net.segment_direction[lo:hi]
        first_back = int(np.flatnonzero(dirs == 1)[0])
        last_back = int(np.flatnonzero(dirs == 1)[-1])
        g_lo, g_hi = int(geo.starts[r]), int(geo.ends[r])
        g_dist = geo.keys[g_lo:g_hi] - geo.offsets[r]
        g_xy = geo.values[g_lo:g_hi]
        length = route.length_m
        forward = np.asarray(route.stop_distances)
        speed = float(fleet.speed_factor[buses].mean())
        for d in (0, 1):
            if d == 0:
                span = slice(0, first_back + 1)
                along = dist[span]
                at = forward
                shape_along = g_dist
                shape_xy = g_xy
            else:
                span = slice(first_back, last_back + 2)
                along = length - dist[span]
                at = length - forward[::-1]
                shape_along = length - g_dist[::-1]
                shape_xy = g_xy[::-1]
            # Timetable seconds are "warped" (free-flow) seconds at speed factor 1; the line's buses run
            # ``speed`` times that fast on average.
            run = _whole_seconds([(a / speed, b / speed) for a, b in _run_times(times[span], along, list(at))])
            trip = trip_id(route.line_id, d)
            shape = f"{route.line_id}-{d}"
            trips.append([route.line_id, SERVICE_ID, trip, route.line_name, str(d), shape])
            sx, sy = _lnglat(shape_xy[:, 0], shape_xy[:, 1])
            for k, (x, y, m) in enumerate(zip(sx, sy, shape_along.tolist(), strict=True)):
                shapes.append([shape, f"{y:.6f}", f"{x:.6f}", str(k), f"{m:.1f}"])
            positions, _, _ = geo.evaluate(np.full(len(at), r, dtype=np.int64), at if d == 0 else forward[::-1])
            px, py = _lnglat(positions[:, 0], positions[:, 1])
            bands = _bus_bands(route.first_hour, route.last_hour)
            offset = bands[0][0]
            for k, ((arr, dep), x, y, m) in enumerate(zip(run, px, py, at.tolist(), strict=True)):
                sid = stop_id(route.line_id, d, k)
                stops.append(
                    [sid, f"{route.line_name} {'上行' if d == 0 else '下行'} 第{k + 1}站", f"{y:.6f}", f"{x:.6f}"]
                )
                stop_times.append([trip, gtfs_time(offset + arr), gtfs_time(offset + dep), sid, str(k + 1), f"{m:.1f}"])
            # The line's buses are spread evenly over its cycle, so one starts every cycle / count warped
            # seconds; congestion stretches that in real time by 1 / factor.
            for b0, b1, factor in bands:
                headway = max(60, round(route.cycle_s / buses.size / (factor * speed)))
                frequencies.append([trip, gtfs_time(b0), gtfs_time(b1), str(headway), "0"])

    stations = {s.station_id: s for s in places.metro_stations()}
    lines_done: set[str] = set()
    for i, svc in enumerate(metro.services):
        if svc.line not in lines_done:
            lines_done.add(svc.line)
            rid = metro_route_id(svc.line)
            routes.append([rid, METRO_AGENCY, svc.line, f"{svc.line}号线", "1"])
        g_lo, g_hi = int(metro.geometry.starts[i]), int(metro.geometry.ends[i])
        cum = (metro.geometry.keys[g_lo:g_hi] - metro.geometry.offsets[i]).tolist()
        xy = metro.geometry.values[g_lo:g_hi]
        order = list(svc.stations) + ([svc.stations[0]] if svc.circular else [])
        for d in (0,) if svc.circular else (0, 1):
            ids = order if d == 0 else order[::-1]
            metres = cum if d == 0 else [cum[-1] - c for c in cum[::-1]]
            schedule: list[tuple[int, int]] = [(0, 0)]
            for k in range(1, len(ids)):
                arrival = schedule[-1][1] + ACCEL_LOSS_S + (metres[k] - metres[k - 1]) / CRUISE_MS
                schedule.append((round(arrival), round(arrival + (DWELL_S if k < len(ids) - 1 else 0.0))))
            trip = metro_trip_id(svc.line, metro.service_index[i], d)
            shape = trip
            trips.append([metro_route_id(svc.line), SERVICE_ID, trip, stations[ids[-1]].name, str(d), shape])
            pts = xy if d == 0 else xy[::-1]
            sx, sy = _lnglat(pts[:, 0], pts[:, 1])
            for k, (x, y, m) in enumerate(zip(sx, sy, metres, strict=True)):
                shapes.append([shape, f"{y:.6f}", f"{x:.6f}", str(k), f"{m:.1f}"])
            offset = SERVICE_HOURS[0] * 3600.0
            for k, (sid, (arr, dep), m) in enumerate(zip(ids, schedule, metres, strict=True)):
                stop_times.append([trip, gtfs_time(offset + arr), gtfs_time(offset + dep), sid, str(k + 1), f"{m:.1f}"])
            frequencies.append(
                [trip, gtfs_time(offset), gtfs_time(SERVICE_HOURS[1] * 3600.0), str(round(svc.headway_s)), "0"]
            )
    # Every station, even one the simulated services pass without stopping (the tiers below licensed place a
    # train at its nearest station, whose id then is the record's stop_id).
    for sid in sorted(stations, key=int):
        s = stations[sid]
        stops.append([sid, s.name, f"{s.lat:.6f}", f"{s.lng:.6f}"])

    ymd = "%Y%m%d"
    return FeedTables(
        files={
            "agency.txt": (["agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang"], agency),
            "routes.txt": (["route_id", "agency_id", "route_short_name", "route_long_name", "route_type"], routes),
            "stops.txt": (["stop_id", "stop_name", "stop_lat", "stop_lon"], stops),
            "trips.txt": (
                ["route_id", "service_id", "trip_id", "trip_headsign", "direction_id", "shape_id"],
                trips,
            ),
            "stop_times.txt": (
                ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence", "shape_dist_traveled"],
                stop_times,
            ),
            "frequencies.txt": (["trip_id", "start_time", "end_time", "headway_secs", "exact_times"], frequencies),
            "shapes.txt": (
                ["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence", "shape_dist_traveled"],
                shapes,
            ),
            "calendar.txt": (
                [
                    "service_id",
                    "monday",
                    "tuesday",
                    "wednesday",
                    "thursday",
                    "friday",
                    "saturday",
                    "sunday",
                    "start_date",
                    "end_date",
                ],
                [[SERVICE_ID, "1", "1", "1", "1", "1", "1", "1", start.strftime(ymd), end.strftime(ymd)]],
            ),
            "feed_info.txt": (
                [
                    "feed_publisher_name",
                    "feed_publisher_url",
                    "feed_lang",
                    "feed_start_date",
                    "feed_end_date",
                    "feed_version",
                    "feed_contact_url",
                ],
                [
                    [
                        "Shanghai Open Feeds (simulated network)",
                        "https://example.org/shanghai-open-feeds",
                        "zh",
                        start.strftime(ymd),
                        end.strftime(ymd),
                        f"seed-{fleet.seed}-buses-{fleet.size}",
                        "https://example.org/shanghai-open-feeds/contact",
                    ]
                ],
            ),
        }
    )


def _csv(header: list[str], rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def to_zip(tables: FeedTables) -> bytes:
    """The feed as a zip archive, files in a fixed order with fixed timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(tables.files):
            header, rows = tables.files[name]
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, _csv(header, rows))
    return buffer.getvalue()


def build_zip(seed: int, buses: int, start: date, days: int = DEFAULT_VALID_DAYS) -> bytes:
    """The static feed for the city the simulator serves with ``seed`` and ``buses``."""
    return to_zip(build_tables(BusFleet(seed, buses), MetroTrains(seed), start, days))
