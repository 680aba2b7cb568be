"""Public car parks (``sh-parking``): where they are, how big, and how full through the day.

Shanghai publishes free spaces for several thousand public car parks; no lot list is openly available, so
lots are placed where each kind clusters: shopping and office car parks by metro stations and district
centres, park-and-ride lots at suburban stations, scenic lots around scenic areas, residential ones by
population. Occupancy follows a daily curve per kind and kind of day, with a smooth wobble per lot; each
lot reports on its own cycle (1–5 minutes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from adapters.simulators import places, profiles
from adapters.simulators import randomness as rnd
from adapters.simulators.beijing import format_many, local_date, local_hour
from adapters.simulators.daytypes import DayType, day_type
from geo import crs

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

KINDS = ("commuter", "shopping", "scenic", "hospital", "transit", "other")
KIND_SHARE = (0.28, 0.25, 0.06, 0.08, 0.08, 0.25)
MEDIAN_CAPACITY = {"commuter": 250, "shopping": 450, "scenic": 300, "hospital": 300, "transit": 200, "other": 120}
COORD_TYPES = ("bd09", "gcj02", "wgs84")


def _pct(*values: int) -> tuple[float, ...]:
    return tuple(v / 100 for v in values)


_W = (0, 6, 7, 8, 9, 10, 12, 14, 16, 17, 18, 19, 20, 21, 22, 24)
# Occupied share (%) by hour of ``_W``, per kind and kind of day.
OCCUPANCY: dict[str, dict[DayType, profiles.Curve]] = {
    "commuter": {
        "workday": (
            _W,
            (0.15, 0.15, 0.25, 0.60, 0.85, 0.90, 0.85, 0.90, 0.88, 0.80, 0.55, 0.35, 0.25, 0.20, 0.17, 0.15),
        ),
        "weekend": (
            _W,
            (0.10, 0.10, 0.12, 0.15, 0.20, 0.25, 0.28, 0.28, 0.25, 0.22, 0.18, 0.15, 0.12, 0.11, 0.10, 0.10),
        ),
        "holiday": (
            _W,
            (0.08, 0.08, 0.08, 0.10, 0.12, 0.15, 0.18, 0.18, 0.15, 0.14, 0.12, 0.10, 0.09, 0.08, 0.08, 0.08),
        ),
    },
    "shopping": {
        "workday": (
            _W,
            (0.05, 0.05, 0.05, 0.08, 0.12, 0.25, 0.55, 0.50, 0.50, 0.55, 0.70, 0.78, 0.70, 0.55, 0.30, 0.05),
        ),
        "weekend": (
            _W,
            (0.06, 0.06, 0.06, 0.08, 0.15, 0.40, 0.85, 0.95, 0.92, 0.90, 0.95, 0.97, 0.85, 0.65, 0.35, 0.06),
        ),
        "holiday": (
            _W,
            (0.06, 0.06, 0.06, 0.10, 0.20, 0.50, 0.95, 1.00, 0.98, 0.95, 0.98, 1.00, 0.90, 0.70, 0.40, 0.06),
        ),
    },
    "scenic": {
        "workday": (
            _W,
            (0.05, 0.05, 0.08, 0.15, 0.30, 0.45, 0.60, 0.65, 0.50, 0.35, 0.20, 0.12, 0.10, 0.08, 0.06, 0.05),
        ),
        "weekend": (
            _W,
            (0.05, 0.06, 0.12, 0.30, 0.60, 0.85, 0.95, 0.95, 0.85, 0.65, 0.40, 0.25, 0.18, 0.12, 0.08, 0.05),
        ),
        "holiday": (
            _W,
            (0.08, 0.08, 0.20, 0.45, 0.80, 0.97, 1.00, 1.00, 0.95, 0.80, 0.55, 0.35, 0.25, 0.15, 0.10, 0.08),
        ),
    },
    "hospital": {
        "workday": (
            _W,
            (0.25, 0.25, 0.45, 0.75, 0.95, 0.98, 0.90, 0.95, 0.85, 0.70, 0.50, 0.40, 0.35, 0.30, 0.27, 0.25),
        ),
        "weekend": (
            _W,
            (0.20, 0.20, 0.30, 0.45, 0.60, 0.65, 0.60, 0.55, 0.50, 0.45, 0.35, 0.30, 0.25, 0.22, 0.20, 0.20),
        ),
        "holiday": (
            _W,
            (0.20, 0.20, 0.25, 0.35, 0.45, 0.50, 0.45, 0.45, 0.40, 0.35, 0.30, 0.25, 0.22, 0.20, 0.20, 0.20),
        ),
    },
    "transit": {
        "workday": (
            _W,
            (0.08, 0.15, 0.45, 0.80, 0.92, 0.93, 0.92, 0.92, 0.90, 0.80, 0.55, 0.35, 0.25, 0.18, 0.12, 0.08),
        ),
        "weekend": (
            _W,
            (0.06, 0.08, 0.12, 0.20, 0.30, 0.40, 0.45, 0.45, 0.40, 0.35, 0.25, 0.18, 0.12, 0.10, 0.08, 0.06),
        ),
        "holiday": (
            _W,
            (0.06, 0.08, 0.15, 0.30, 0.45, 0.55, 0.60, 0.60, 0.55, 0.45, 0.30, 0.20, 0.15, 0.10, 0.08, 0.06),
        ),
    },
    "other": {
        "workday": (
            _W,
            (0.92, 0.90, 0.85, 0.65, 0.50, 0.45, 0.45, 0.45, 0.50, 0.55, 0.70, 0.80, 0.86, 0.90, 0.92, 0.92),
        ),
        "weekend": (
            _W,
            (0.92, 0.92, 0.90, 0.85, 0.75, 0.65, 0.60, 0.60, 0.65, 0.70, 0.78, 0.85, 0.88, 0.90, 0.92, 0.92),
        ),
        "holiday": (
            _W,
            (0.90, 0.90, 0.88, 0.80, 0.65, 0.55, 0.50, 0.50, 0.55, 0.62, 0.72, 0.80, 0.85, 0.88, 0.90, 0.90),
        ),
    },
}

_S_KIND, _S_CAP, _S_FACTOR, _S_PERIOD, _S_PHASE, _S_WOBBLE, _S_CRS, _S_STALE = range(400, 408)


class ParkingLots:
    def __init__(self, seed: int, lots: int = 5_000) -> None:
        if lots < 1:
            raise ValueError(f"need at least one car park, got {lots}")
        self.seed = seed
        self.size = lots
        rng = np.random.default_rng([seed, 0xCA7])
        ids = np.arange(lots, dtype=np.int64)
        u = rnd.uniform(seed, _S_KIND, ids)
        self.kind = np.searchsorted(np.cumsum(KIND_SHARE), u, side="right").clip(0, len(KINDS) - 1)
        self.lng, self.lat, self.names = self._place(rng)
        median = np.array([MEDIAN_CAPACITY[k] for k in KINDS])[self.kind]
        capacity = median * np.exp(0.5 * rnd.normal(seed, _S_CAP, ids))
        self.capacity = np.clip(np.rint(capacity), 20, 3_000).astype(np.int64)
        self.factor = 0.75 + 0.4 * rnd.uniform(seed, _S_FACTOR, ids)
        self.period = (60 + 60 * np.floor(rnd.uniform(seed, _S_PERIOD, ids) * 5)).astype(np.int64)
        self.phase = (rnd.uniform(seed, _S_PHASE, ids) * self.period).astype(np.int64)
        c = rnd.uniform(seed, _S_CRS, ids)
        self.coord_type = np.where(c < 0.5, 0, np.where(c < 0.9, 1, 2)).astype(np.int64)
        self.shown_lng = self.lng.copy()
        self.shown_lat = self.lat.copy()
        for code, name in enumerate(COORD_TYPES[:2]):
            sel = self.coord_type == code
            self.shown_lng[sel], self.shown_lat[sel] = crs.convert_arrays(self.lng[sel], self.lat[sel], "wgs84", name)
        self.ids = [f"SHP-{i:05d}" for i in range(lots)]

    def _place(self, rng: np.random.Generator) -> tuple[FloatArray, FloatArray, list[str]]:
        stations = places.metro_stations()
        centres = places.district_centres()
        scenic = places.scenic_areas()
        sx, sy = places.to_xy([s.lng for s in stations], [s.lat for s in stations])
        suburban = np.flatnonzero(np.hypot(sx, sy) > 10_000)
        px, py, pdist = places.sample_points_in_districts(rng, self.size)
        x = np.zeros(self.size)
        y = np.zeros(self.size)
        names: list[str] = []
        district_names = {c.adcode: c.name_zh for c in centres}
        counters: dict[str, int] = {}
        for i, k in enumerate(self.kind.tolist()):
            kind = KINDS[k]
            counters[kind] = counters.get(kind, 0) + 1
            n = counters[kind]
            if kind in ("commuter", "shopping") and rng.random() < 0.7:
                s = int(rng.integers(len(stations)))
                x[i], y[i] = sx[s] + rng.normal(0, 400), sy[s] + rng.normal(0, 400)
                label = "商务楼" if kind == "commuter" else "购物中心"
                names.append(f"{stations[s].name}{label}停车场{n}")
            elif kind == "transit":
                s = int(rng.choice(suburban)) if suburban.size else int(rng.integers(len(stations)))
                x[i], y[i] = sx[s] + rng.normal(0, 150), sy[s] + rng.normal(0, 150)
                names.append(f"地铁{stations[s].name}站P+R停车场")
            elif kind == "scenic":
                a = scenic[int(rng.integers(len(scenic)))]
                ax, ay = places.to_xy(a.lng, a.lat)
                angle = rng.uniform(0, 2 * np.pi)
                reach = a.radius_m + rng.uniform(50, 400)
                x[i], y[i] = float(ax) + reach * np.cos(angle), float(ay) + reach * np.sin(angle)
                names.append(f"{a.name_zh}{n}号停车场")
            else:
                lx, ly = places.to_xy(px[i], py[i])
                x[i], y[i] = float(lx), float(ly)
                district = district_names.get(pdist[i], "")
                label = {"hospital": "医院", "other": "小区公共", "commuter": "商务楼", "shopping": "商场"}[kind]
                names.append(f"{district}{label}停车场{n}")
        lng, lat = places.to_lnglat(x, y)
        return lng, lat, names

    def occupied(self, t_s: IntArray) -> IntArray:
        """Occupied spaces of every lot, each at its own time ``t_s[i]``."""
        kinds_of_day: dict[int, DayType] = {}
        share = np.zeros(self.size)
        hours = local_hour(t_s)
        days = (t_s + 8 * 3600) // 86_400
        for day in np.unique(days).tolist():
            kinds_of_day[day] = day_type(local_date(day * 86_400))
        for k, kind in enumerate(KINDS):
            for day, kind_of_day in kinds_of_day.items():
                sel = (self.kind == k) & (days == day)
                if sel.any():
                    share[sel] = profiles.curve_at(OCCUPANCY[kind][kind_of_day], hours[sel])
        ids = np.arange(self.size)
        share = share * self.factor + 0.06 * rnd.smooth_noise(self.seed, _S_WOBBLE, ids, t_s / 900.0)
        return np.rint(np.clip(share, 0.0, 1.0) * self.capacity).astype(np.int64)

    def report_times(self, t_s: int) -> IntArray:
        return t_s - np.mod(t_s - self.phase, self.period)

    def records(self, t_s: int, skew_s: int = 0) -> tuple[list[dict[str, Any]], int]:
        report = self.report_times(t_s)
        occupied = self.occupied(report)
        free = self.capacity - occupied
        hour = local_hour(report)
        # Shopping-centre car parks close overnight.
        closed = (self.kind == KINDS.index("shopping")) & ((hour >= 23.5) | (hour < 7.0))
        status = np.where(closed, 0, np.where(free <= 0, 2, 1))
        seq = (report - self.phase) // self.period
        times = format_many(report + skew_s)
        lngs = np.round(self.shown_lng, 6).tolist()
        lats = np.round(self.shown_lat, 6).tolist()
        records = [
            {
                "parkId": pid,
                "parkName": name,
                "lng": x,
                "lat": y,
                "coordType": COORD_TYPES[ct],
                "totalSpace": total,
                "freeSpace": fr,
                "parkType": KINDS[k],
                "status": st,
                "updateTime": tm,
                "seq": sq,
            }
            for pid, name, x, y, ct, total, fr, k, st, tm, sq in zip(
                self.ids,
                self.names,
                lngs,
                lats,
                self.coord_type.tolist(),
                self.capacity.tolist(),
                free.tolist(),
                self.kind.tolist(),
                status.tolist(),
                times,
                seq.tolist(),
                strict=True,
            )
        ]
        return records, int(report.max())
