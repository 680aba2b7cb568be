"""Public charging stations and their connectors (``sh-charging``), with a per-connector status machine.

Connector status follows the national interconnection codes (0 offline, 1 available, 2 plugged in but
not charging, 3 charging, 4 reserved, 255 faulted). Every connector runs this state machine in fixed
one-minute simulated steps:

    available --(a car arrives: rate follows the hour's demand)--> plugged (preparing) --> charging
    charging --(after its drawn length: ~40 min DC, ~4 h AC)--> plugged (finished, car not yet moved)
        or available
    plugged (finished) --> available;  available --> reserved --> plugged or available
    any --(rare)--> faulted --(repair, hours)--> available
and a whole station can lose its uplink for a while (all its connectors report offline).

Random draws are hashed from (seed, connector, step), so the state at a step depends only on the seed and
the start time, never on how often the feed is polled.
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

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

STEP_S = 60
WARMUP_STEPS = 180

# Internal states and the status code each is published as.
OFFLINE, AVAILABLE, PREPARING, CHARGING, FINISHING, RESERVED, FAULTED = range(7)
STATUS_CODE = np.array([0, 1, 2, 3, 2, 4, 255], dtype=np.int64)

OPERATORS = ("特来电", "星星充电", "国家电网", "上汽安悦", "蔚来能源", "小桔充电", "依威能源", "普天新能源")
OPERATOR_SHARE = (0.28, 0.22, 0.14, 0.1, 0.08, 0.08, 0.05, 0.05)
FAULT_CODES = ("E01", "E07", "E12", "E21", "E33", "E45")
COORD_TYPES = ("gcj02", "bd09", "wgs84")

# Arrivals per connector-hour at full demand, and session lengths by connector type: log-normal, drawn when
# charging starts (median and spread of the log). A fixed chance to end each minute would make a third of
# fast-charger sessions shorter than 20 min and one AC session in eight longer than 8 h; real fast charging
# clusters around half an hour to an hour and public AC around a few hours. Means: DC ~40 min, AC ~3.9 h.
ARRIVALS_PER_HOUR = {"dc": 0.9, "ac": 0.25}
SESSION_MEDIAN_MIN = {"dc": 35.0, "ac": 200.0}
SESSION_SIGMA = {"dc": 0.5, "ac": 0.55}

# Charging demand through the day (share of the peak arrival rate): DC follows taxis and ride-hailing
# (midday and evening peaks, a night top-up), AC follows people parking at work and at home.
DEMAND: dict[DayType, dict[str, profiles.Curve]] = {
    "workday": {
        "dc": ((0, 3, 6, 9, 11, 13, 15, 17, 19, 21, 24), (0.55, 0.35, 0.3, 0.5, 0.8, 1.0, 0.75, 0.6, 0.85, 0.9, 0.55)),
        "ac": ((0, 6, 8, 9, 12, 17, 19, 21, 24), (0.15, 0.1, 0.6, 1.0, 0.4, 0.3, 0.7, 0.6, 0.15)),
    },
    "weekend": {
        "dc": ((0, 3, 6, 9, 12, 15, 18, 21, 24), (0.5, 0.3, 0.25, 0.45, 0.85, 0.8, 0.8, 0.75, 0.5)),
        "ac": ((0, 6, 9, 12, 15, 18, 21, 24), (0.15, 0.1, 0.35, 0.5, 0.5, 0.45, 0.5, 0.15)),
    },
    "holiday": {
        "dc": ((0, 3, 6, 9, 12, 15, 18, 21, 24), (0.5, 0.3, 0.3, 0.6, 0.9, 0.9, 0.85, 0.75, 0.5)),
        "ac": ((0, 6, 9, 12, 15, 18, 21, 24), (0.15, 0.1, 0.4, 0.55, 0.55, 0.5, 0.5, 0.15)),
    },
}

_S_SIZE, _S_OPER, _S_DC, _S_POWER, _S_INIT, _S_STEP, _S_STN, _S_CRS, _S_FCODE, _S_LEN = range(500, 510)


class ChargingNetwork:
    def __init__(self, seed: int, connectors: int = 20_000, start_s: int = 0, private_share: float = 0.02) -> None:
        if connectors < 1:
            raise ValueError(f"need at least one charging connector, got {connectors}")
        self.seed = seed
        rng = np.random.default_rng([seed, 0xC4A6])
        # Public stations of 2–40 connectors (median ~8) until the connector count is reached, then a few
        # private home piles (one connector each).
        sizes: list[int] = []
        total = 0
        while total < connectors:
            size = int(np.clip(round(rng.lognormal(np.log(8), 0.7)), 2, 40))
            size = min(size, connectors - total)
            sizes.append(size)
            total += size
        public_stations = len(sizes)
        private = max(1, round(public_stations * private_share))
        sizes += [1] * private
        self.station_count = len(sizes)
        self.public = np.array([1] * public_stations + [0] * private, dtype=np.int64)
        self.sizes = np.array(sizes, dtype=np.int64)
        self.station_of = np.repeat(np.arange(self.station_count), self.sizes)
        self.size = int(self.sizes.sum())
        st = np.arange(self.station_count)
        cid = np.arange(self.size)
        # Station-level traits: DC fast-charging hubs vs AC destination chargers.
        station_dc = rnd.uniform(seed, _S_DC, st) < 0.6
        self.is_dc = station_dc[self.station_of] & (self.public[self.station_of] == 1)
        power_pick = rnd.uniform(seed, _S_POWER, cid)
        self.power = np.where(
            self.is_dc, np.where(power_pick < 0.5, 120.0, np.where(power_pick < 0.8, 60.0, 180.0)), 7.0
        )
        self.connector_type = np.where(self.is_dc, 4, 3)
        self.lng, self.lat, self.names = self._place(rng)
        c = rnd.uniform(seed, _S_CRS, st)
        self.coord_type = np.where(c < 0.6, 0, np.where(c < 0.85, 1, 2)).astype(np.int64)
        self.shown_lng = self.lng.copy()
        self.shown_lat = self.lat.copy()
        for code, name in enumerate(COORD_TYPES[:2]):
            sel = self.coord_type == code
            self.shown_lng[sel], self.shown_lat[sel] = crs.convert_arrays(self.lng[sel], self.lat[sel], "wgs84", name)
        op = np.searchsorted(np.cumsum(OPERATOR_SHARE), rnd.uniform(seed, _S_OPER, st), side="right")
        self.operator = [OPERATORS[min(i, len(OPERATORS) - 1)] if self.public[s] else "个人" for s, i in enumerate(op)]
        self.station_ids = [f"SHC-{i:05d}" for i in range(self.station_count)]
        self.connector_ids = [f"{self.station_ids[s]}-{k + 1:02d}" for s, n in enumerate(sizes) for k in range(n)]
        self.fault_code = [FAULT_CODES[i] for i in (rnd.uniform(seed, _S_FCODE, cid) * len(FAULT_CODES)).astype(int)]
        self._start_step = start_s // STEP_S - WARMUP_STEPS
        self._reset()

    def _place(self, rng: np.random.Generator) -> tuple[FloatArray, FloatArray, list[str]]:
        stations = places.metro_stations()
        n = self.station_count
        px, py, pdist = places.sample_points_in_districts(rng, n)
        names_by_adcode = {c.adcode: c.name_zh for c in places.district_centres()}
        near_metro = (rng.random(n) < 0.4) & (self.public == 1)
        pick = rng.integers(len(stations), size=n)
        sx = np.array([stations[i].lng for i in pick])
        sy = np.array([stations[i].lat for i in pick])
        mx, my = places.to_xy(sx, sy)
        mx = mx + rng.normal(0, 500, n)
        my = my + rng.normal(0, 500, n)
        mlng, mlat = places.to_lnglat(mx, my)
        lng = np.where(near_metro, mlng, px)
        lat = np.where(near_metro, mlat, py)
        names = []
        for i in range(n):
            if not self.public[i]:
                names.append(f"{names_by_adcode.get(pdist[i], '')}个人充电桩{i}")
            elif near_metro[i]:
                names.append(f"{stations[pick[i]].name}公共充电站")
            else:
                names.append(f"{names_by_adcode.get(pdist[i], '')}公共充电站{i}")
        return lng, lat, names

    def _reset(self) -> None:
        """Initial state at the first step: idle with a few sessions and faults, then warmed up by stepping."""
        cid = np.arange(self.size)
        u = rnd.uniform(self.seed, _S_INIT, cid)
        self.state = np.where(u < 0.02, FAULTED, np.where(u < 0.25, CHARGING, AVAILABLE)).astype(np.int64)
        # Sessions already under way at the start are somewhere inside their length.
        lengths = self._session_steps(cid, self._start_step)
        elapsed = np.floor(rnd.uniform(self.seed, _S_INIT + 50, cid) * lengths).astype(np.int64)
        self.charge_since = self._start_step - elapsed  # step at which each connector's session began
        self.charge_until = self.charge_since + lengths
        self.station_down = np.zeros(self.station_count, dtype=bool)
        self.changes = np.zeros(self.station_count, dtype=np.int64)
        self.changed_step = np.full(self.station_count, self._start_step, dtype=np.int64)
        self.step_index = self._start_step

    def _advance_one(self) -> None:
        k = self.step_index + 1
        t = k * STEP_S
        seed = self.seed
        cid = np.arange(self.size)
        hour = float(local_hour(t))
        kind_of_day = day_type(local_date(t))
        demand = np.where(
            self.is_dc,
            float(profiles.curve_at(DEMAND[kind_of_day]["dc"], hour)) * ARRIVALS_PER_HOUR["dc"],
            float(profiles.curve_at(DEMAND[kind_of_day]["ac"], hour)) * ARRIVALS_PER_HOUR["ac"],
        )
        p_arrive = demand * STEP_S / 3600.0
        u = rnd.uniform(seed, _S_STEP, cid, k)
        v = rnd.uniform(seed, _S_STEP + 50, cid, k)
        s = self.state
        new = s.copy()
        p_fault = STEP_S / (45 * 86_400.0)
        new[(s == AVAILABLE) & (u < p_arrive)] = PREPARING
        new[(s == AVAILABLE) & (u >= p_arrive) & (u < p_arrive * 1.05)] = RESERVED
        new[(s == PREPARING) & (u < 0.7)] = CHARGING
        new[(s == PREPARING) & (u > 0.98)] = AVAILABLE  # plugged, then gave up
        ending = (s == CHARGING) & (k >= self.charge_until)
        new[ending & (v < 0.3)] = FINISHING
        new[ending & (v >= 0.3)] = AVAILABLE
        new[(s == FINISHING) & (u < STEP_S / 1200.0)] = AVAILABLE
        new[(s == RESERVED) & (u < 0.08)] = PREPARING
        new[(s == RESERVED) & (u > 0.97)] = AVAILABLE
        new[(s == FAULTED) & (u < STEP_S / (8 * 3600.0))] = AVAILABLE
        new[(s != FAULTED) & (v > 1.0 - p_fault)] = FAULTED
        st = np.arange(self.station_count)
        w = rnd.uniform(seed, _S_STN, st, k)
        down = self.station_down.copy()
        down[~self.station_down & (w < STEP_S / (20 * 86_400.0))] = True
        down[self.station_down & (w < STEP_S / 7_200.0)] = False
        shown_before = np.where(self.station_down[self.station_of], OFFLINE, STATUS_CODE[s])
        shown_after = np.where(down[self.station_of], OFFLINE, STATUS_CODE[new])
        changed = np.bincount(self.station_of, weights=shown_before != shown_after, minlength=self.station_count)
        moved = changed > 0
        self.changes += changed.astype(np.int64)
        self.changed_step[moved] = k
        starting = (new == CHARGING) & (s != CHARGING)
        if starting.any():
            self.charge_since[starting] = k
            self.charge_until[starting] = k + self._session_steps(cid[starting], k)
        self.state = new
        self.station_down = down
        self.step_index = k

    def _session_steps(self, cid: IntArray, k: int) -> IntArray:
        """Drawn session lengths in steps (at least one) of connectors ``cid`` starting to charge at step ``k``."""
        dc = self.is_dc[cid]
        median = np.where(dc, SESSION_MEDIAN_MIN["dc"], SESSION_MEDIAN_MIN["ac"])
        sigma = np.where(dc, SESSION_SIGMA["dc"], SESSION_SIGMA["ac"])
        minutes = median * np.exp(sigma * rnd.normal(self.seed, _S_LEN, cid, k))
        return np.maximum(1, np.round(minutes * 60.0 / STEP_S)).astype(np.int64)

    def advance_to(self, t_s: int) -> None:
        target = t_s // STEP_S
        if target < self.step_index:
            self._reset()  # asked for an earlier time: replay from the start
        while self.step_index < target:
            self._advance_one()

    def statuses(self, t_s: int) -> IntArray:
        """Published status code of every connector at ``t_s``."""
        self.advance_to(t_s)
        return np.where(self.station_down[self.station_of], 0, STATUS_CODE[self.state])

    def records(self, t_s: int, skew_s: int = 0) -> tuple[list[dict[str, Any]], int]:
        status = self.statuses(t_s).tolist()
        updated = self.changed_step * STEP_S
        times = format_many(updated + skew_s)
        lngs = np.round(self.shown_lng, 6).tolist()
        lats = np.round(self.shown_lat, 6).tolist()
        power = self.power.tolist()
        ctype = self.connector_type.tolist()
        stations: list[dict[str, Any]] = []
        c = 0
        for s, size in enumerate(self.sizes.tolist()):
            connectors: list[dict[str, Any]] = []
            for _ in range(size):
                conn: dict[str, Any] = {
                    "connectorId": self.connector_ids[c],
                    "connectorType": ctype[c],
                    "power": power[c],
                    "status": status[c],
                }
                if status[c] == 255:
                    conn["faultCode"] = self.fault_code[c]
                connectors.append(conn)
                c += 1
            stations.append(
                {
                    "stationId": self.station_ids[s],
                    "stationName": self.names[s],
                    "operatorName": self.operator[s],
                    "lng": lngs[s],
                    "lat": lats[s],
                    "coordType": COORD_TYPES[int(self.coord_type[s])],
                    "isPublic": int(self.public[s]),
                    "updateTime": times[s],
                    "seq": int(self.changes[s]),
                    "connectors": connectors,
                }
            )
        return stations, int(updated.max())
