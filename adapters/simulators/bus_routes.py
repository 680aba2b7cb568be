"""A plausible Shanghai bus network: routes between real places, with stops and a running timetable.

Real bus route geometry for Shanghai is not openly available (see the shared data README), so routes are
generated: each runs between two real anchors (metro stations, district centres, scenic areas, and points
inside districts weighted by population) through the anchors along the way, turning corners like streets
do, with stops every few hundred metres. Each route's timetable is a piecewise-linear function of
"warped" time (see ``profiles.warped_seconds``) to distance along the route for one round trip: cruising
between stops, waiting at signals, dwelling at stops, laying over at the terminals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from adapters.simulators import places
from adapters.simulators.ragged import RaggedPiecewise

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

CENTRAL_RADIUS_M = 12_000.0  # inside roughly the Outer Ring Road: short stop spacing, slow streets

# Line-name prefixes of suburban districts (Shanghai names many suburban lines this way, e.g. 松江12路).
SUBURB_PREFIX: dict[str, tuple[str, str]] = {
    "310112": ("闵行", "MH"),
    "310113": ("宝山", "BS"),
    "310114": ("嘉定", "JD"),
    "310115": ("浦东", "PD"),
    "310116": ("金山", "JS"),
    "310117": ("松江", "SJ"),
    "310118": ("青浦", "QP"),
    "310120": ("奉贤", "FX"),
    "310151": ("崇明", "CM"),
}


@dataclass(frozen=True, slots=True)
class BusRoute:
    line_id: str
    line_name: str
    length_m: float
    cycle_s: float  # one round trip in warped seconds, layovers included
    first_hour: float  # service window, Beijing local hours; night lines wrap past midnight
    last_hour: float
    popularity: float  # peak load share of the busiest run (can exceed 1: crush loads)
    stop_count: int
    stop_distances: tuple[float, ...]  # metres along the route of each stop, in direction-0 order


@dataclass(frozen=True, slots=True)
class BusNetwork:
    routes: tuple[BusRoute, ...]
    geometry: RaggedPiecewise  # distance along route → (x, y) metres in the local frame
    timetable: RaggedPiecewise  # warped seconds into the cycle → distance along route
    # Per timetable segment (aligned with timetable.values rows): direction and the next stop's index.
    segment_direction: IntArray
    segment_next_stop: IntArray


def _anchors(rng: np.random.Generator, neighbourhoods: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    stations = places.metro_stations()
    centres = places.district_centres()
    scenic = places.scenic_areas()
    lng = [s.lng for s in stations] + [c.lng for c in centres] + [a.lng for a in scenic]
    lat = [s.lat for s in stations] + [c.lat for c in centres] + [a.lat for a in scenic]
    weight = [3.0] * len(stations) + [6.0] * len(centres) + [1.0] * len(scenic)
    nx, ny, _ = places.sample_points_in_districts(rng, neighbourhoods)
    x, y = places.to_xy(np.concatenate([lng, nx]), np.concatenate([lat, ny]))
    w = np.concatenate([weight, np.ones(nx.size)])
    return x, y, w / w.sum()


class _Land:
    """Shanghai's land in the local frame, to keep route corners out of the sea and the Yangtze."""

    def __init__(self) -> None:
        from geo.districts import district_index

        self.geom = shapely.union_all([d.geometry for d in district_index().districts])
        shapely.prepare(self.geom)

    def contains(self, x: float, y: float) -> bool:
        lng, lat = places.to_lnglat(x, y)
        return bool(shapely.contains_xy(self.geom, float(lng), float(lat)))


def _route_path(
    rng: np.random.Generator, ax: FloatArray, ay: FloatArray, weights: FloatArray, land: _Land
) -> tuple[FloatArray, FloatArray, int]:
    origin = int(rng.choice(ax.size, p=weights))
    ox, oy = ax[origin], ay[origin]
    far = np.hypot(ox, oy) > CENTRAL_RADIUS_M
    target = rng.uniform(7_000, 20_000) if far else rng.uniform(5_000, 14_000)
    dist = np.hypot(ax - ox, ay - oy)
    candidates = np.flatnonzero((dist > 0.6 * target) & (dist < 1.25 * target))
    dest = int(rng.choice(candidates)) if candidates.size else int(np.argmin(np.abs(dist - target)))
    dx, dy = ax[dest] - ox, ay[dest] - oy
    length = max(float(np.hypot(dx, dy)), 1.0)
    # Anchors inside a corridor along the way become via points, in travel order.
    proj = ((ax - ox) * dx + (ay - oy) * dy) / (length * length)
    off = np.abs((ax - ox) * dy - (ay - oy) * dx) / length
    via = np.flatnonzero((proj > 0.08) & (proj < 0.92) & (off < 1_200.0))
    if via.size > 5:
        via = rng.choice(via, size=5, replace=False)
    via = via[np.argsort(proj[via])]
    points = [(ox, oy)] + [(ax[i], ay[i]) for i in via] + [(ax[dest], ay[dest])]
    path: list[tuple[float, float]] = [points[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if rng.random() < 0.7:
            corners = [(x1, y0), (x0, y1)]
            if rng.random() < 0.5:
                corners.reverse()
            for cx, cy in corners:
                if land.contains(cx, cy):
                    path.append((cx, cy))
                    break
        path.append((x1, y1))
    xy = np.asarray(path, dtype=np.float64)
    keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 1.0])
    xy = xy[keep]
    if len(xy) < 2:  # origin and destination coincide: run a short loop east instead
        xy = np.vstack([xy[:1], xy[:1] + np.array([[2_000.0, 0.0]])])
    return xy[:, 0], xy[:, 1], origin


def _run_knots(
    rng: np.random.Generator, stops: FloatArray, central: bool, t0: float
) -> tuple[list[float], list[float], list[int], float]:
    """Knots (time, distance) of one run over ``stops`` (distances in travel order), next-stop indices,
    and the arrival time at the last stop."""
    times: list[float] = []
    dists: list[float] = []
    nexts: list[int] = []
    t = t0
    for k in range(len(stops) - 1):
        a, b = float(stops[k]), float(stops[k + 1])
        speed = rng.uniform(19.0, 27.0) if central else rng.uniform(27.0, 38.0)
        travel = abs(b - a) / (speed / 3.6)
        times.append(t)
        dists.append(a)
        nexts.append(k + 1)
        if rng.random() < 0.55:  # a red light somewhere along the segment
            f = rng.uniform(0.3, 0.9)
            t += travel * f
            times.append(t)
            dists.append(a + (b - a) * f)
            nexts.append(k + 1)
            t += rng.uniform(10.0, 50.0)
            times.append(t)
            dists.append(a + (b - a) * f)
            nexts.append(k + 1)
            t += travel * (1 - f)
        else:
            t += travel
        if k + 1 < len(stops) - 1:
            times.append(t)
            dists.append(b)
            nexts.append(k + 1)  # dwelling: the stop being served
            t += rng.uniform(15.0, 40.0)
    return times, dists, nexts, t


def build_network(seed: int, route_count: int) -> BusNetwork:
    if route_count < 1:
        raise ValueError("need at least one bus route")
    rng = np.random.default_rng([seed, 0xB05])
    land = _Land()
    ax, ay, weights = _anchors(rng, neighbourhoods=max(300, route_count))
    from geo.districts import district_of

    routes: list[BusRoute] = []
    geo_breaks: list[FloatArray] = []
    geo_values: list[FloatArray] = []
    tt_breaks: list[FloatArray] = []
    tt_values: list[FloatArray] = []
    seg_dir: list[int] = []
    seg_next: list[int] = []
    used_names: set[str] = set()
    night_lines = 0
    for r in range(route_count):
        xs, ys, _ = _route_path(rng, ax, ay, weights, land)
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(xs), np.diff(ys)))])
        length = float(cum[-1])
        central = bool(np.hypot(xs.mean(), ys.mean()) < CENTRAL_RADIUS_M)
        spacing = (450.0, 800.0) if central else (700.0, 1_200.0)
        stops = [0.0]
        while stops[-1] + spacing[1] < length:
            stops.append(stops[-1] + rng.uniform(*spacing))
        stops.append(length)
        fwd = np.asarray(stops)
        t_f, d_f, n_f, t_arr = _run_knots(rng, fwd, central, 0.0)
        back_stops = length - fwd[::-1]
        t_b, d_b, n_b, t_end = _run_knots(rng, back_stops, central, t_arr + rng.uniform(180.0, 480.0))
        cycle = t_end + rng.uniform(180.0, 480.0)
        times = [*t_f, t_arr, *t_b, t_end, cycle]
        dists = [*d_f, length, *[length - d for d in d_b], 0.0, 0.0]
        dirs = [0] * len(t_f) + [1] * (len(t_b) + 1) + [0, 0]
        nexts = [*n_f, 0, *n_b, 0, 0]
        tt_breaks.append(np.asarray(times))
        tt_values.append(np.asarray(dists))
        seg_dir.extend(dirs)
        seg_next.extend(nexts)
        geo_breaks.append(cum)
        geo_values.append(np.column_stack([xs, ys]))
        lng, lat = places.to_lnglat(xs[:1], ys[:1])
        district = district_of(lng, lat)[0] or "310101"
        is_night = night_lines < max(1, route_count // 40) and r % 40 == 39
        line_id, line_name = _line_name(r, str(district), is_night, used_names)
        night_lines += int(is_night)
        first, last = (23.0, 5.0) if is_night else (rng.uniform(5.0, 6.0), rng.uniform(21.5, 23.5))
        routes.append(
            BusRoute(
                line_id=line_id,
                line_name=line_name,
                length_m=length,
                cycle_s=cycle,
                first_hour=first,
                last_hour=last,
                popularity=float(np.clip(rng.lognormal(np.log(0.75), 0.35), 0.15, 1.3)),
                stop_count=len(stops),
                stop_distances=tuple(float(d) for d in stops),
            )
        )
    return BusNetwork(
        routes=tuple(routes),
        geometry=RaggedPiecewise(geo_breaks, geo_values),
        timetable=RaggedPiecewise(tt_breaks, tt_values),
        segment_direction=np.asarray(seg_dir, dtype=np.int64),
        segment_next_stop=np.asarray(seg_next, dtype=np.int64),
    )


def trip_id(line_id: str, direction: int) -> str:
    """The GTFS trip a bus of ``line_id`` running in ``direction`` is on: one frequency-based trip per line and
    direction, as every bus of a line keeps the line's timetable (see ``gtfs_static``)."""
    return f"{line_id}-{direction}"


def stop_id(line_id: str, direction: int, index: int) -> str:
    """The id of a line's ``index``-th stop in ``direction`` (the ``nextStationId`` the buses report)."""
    return f"{line_id}-{direction}-{index}"


def _line_name(index: int, district: str, night: bool, used: set[str]) -> tuple[str, str]:
    """Shanghai-style line names: 1–999路 in the city, 浦东12路 etc. in suburbs, 3xx for night lines."""
    if night:
        number = 301 + index // 40 % 99
        line_id, name = str(number), f"{number}路"
    elif district in SUBURB_PREFIX:
        prefix_zh, prefix_id = SUBURB_PREFIX[district]
        number = 1 + index % 97
        line_id, name = f"{prefix_id}{number}", f"{prefix_zh}{number}路"
    else:
        number = 1 + (index * 7) % 999
        if 300 <= number < 400:  # the 3xx block is the night lines'
            number += 100
        line_id, name = str(number), f"{number}路"
    base_id, base_name = line_id, name
    suffix = 1
    while line_id in used:
        suffix += 1
        line_id, name = f"{base_id}-{suffix}", f"{base_name.removesuffix('路')}区间{suffix}路"
    used.add(line_id)
    return line_id, name
