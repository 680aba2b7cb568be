"""Visitors inside Shanghai's A-level scenic areas (``sh-scenic``), against each area's capacity.

Each area follows a daily curve for its kind (parks open early and empty by dusk, observation decks run
into the evening, old streets peak at night), scaled by the kind of day: workdays quiet, weekends about
twice as busy, public holidays close to capacity at the most popular areas. Counts are published every
five minutes, as the city's scenic-area monitoring does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from adapters.simulators import places
from adapters.simulators import randomness as rnd
from adapters.simulators.beijing import local_date, local_hour
from adapters.simulators.daytypes import DayType, day_type

FloatArray = NDArray[np.float64]

UPDATE_S = 300
Kind = Literal["park", "deck", "street", "museum", "theme"]

# Opening hours (Beijing local) and how far into the open period the crowd peaks, per kind.
OPENING: dict[Kind, tuple[float, float, float]] = {
    "park": (6.0, 18.0, 0.55),
    "deck": (9.0, 21.5, 0.65),
    "street": (8.0, 23.0, 0.70),
    "museum": (9.0, 17.0, 0.50),
    "theme": (9.0, 18.0, 0.45),
}
# Share of capacity inside at the daily peak, for an area of average popularity.
PEAK_SHARE: dict[DayType, float] = {"workday": 0.18, "weekend": 0.42, "holiday": 0.70}
LEVEL_BOOST = {"5A": 1.3, "4A": 1.0, "3A": 0.8}

_KIND_WORDS: tuple[tuple[Kind, tuple[str, ...]], ...] = (
    ("deck", ("观光", "东方明珠")),
    ("street", ("古镇", "新天地", "田子坊", "老街", "多伦路", "豫园")),
    ("museum", ("馆", "陵园", "遗址", "马戏城")),
    ("theme", ("乐园", "欢乐谷", "野生动物园", "赛车场", "影视")),
)

# Named sub-zones where the place is well known; other areas get generic zones.
ZONES: dict[str, tuple[str, ...]] = {
    "SCN-YUYUAN": ("九曲桥", "豫园商城", "湖心亭"),
    "SCN-ORIENTALPEARL": ("263米观光层", "259米全透明观光廊", "上海城市历史发展陈列馆"),
    "SCN-WILDANIMALPARK": ("步行区", "车入区", "大型动物表演场"),
    "SCN-ZHUJIAJIAO": ("放生桥", "北大街", "课植园"),
    "SCN-SCIENCEMUSEUM": ("地壳探秘", "智慧之光", "宇航天地"),
}
GENERIC_ZONES = ("入口区", "核心区", "休闲区")


def kind_of(area: places.ScenicArea) -> Kind:
    for kind, words in _KIND_WORDS:
        if any(w in area.name_zh for w in words):
            return kind
    return "park"


@dataclass(frozen=True, slots=True)
class _Area:
    area: places.ScenicArea
    kind: Kind
    popularity: float
    zone_names: tuple[str, ...]
    zone_shares: FloatArray


class ScenicAreas:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.areas: list[_Area] = []
        for i, area in enumerate(places.scenic_areas()):
            popularity = 0.6 + 0.8 * float(rnd.uniform(seed, 301, i)[()])
            zones = ZONES.get(area.code, GENERIC_ZONES)
            raw = 0.5 + rnd.uniform(seed, 302, i, np.arange(len(zones)))
            self.areas.append(
                _Area(area, kind_of(area), popularity * LEVEL_BOOST.get(area.level, 1.0), zones, raw / raw.sum())
            )

    def counts(self, t_s: int) -> NDArray[np.int64]:
        """Visitors inside each area at the five-minute update at or before ``t_s``."""
        bucket = t_s - t_s % UPDATE_S
        hour = float(local_hour(bucket))
        kind_of_day = day_type(local_date(bucket))
        out = np.zeros(len(self.areas), dtype=np.int64)
        for i, a in enumerate(self.areas):
            opens, closes, peak_at = OPENING[a.kind]
            if not opens <= hour < closes:
                continue
            f = (hour - opens) / (closes - opens)
            # A skewed bump: 0 at opening and closing, 1 at ``peak_at`` of the way through the day.
            exponent = np.log(0.5) / np.log(peak_at)
            shape = float(np.sin(np.pi * f**exponent)) ** 1.5
            share = PEAK_SHARE[kind_of_day] * a.popularity * shape
            share *= 1.0 + 0.12 * float(rnd.smooth_noise(self.seed, 303, i, bucket / 1800.0)[()])
            capacity = a.area.max_capacity or 0  # scenic_areas() keeps only areas with a capacity
            out[i] = int(np.clip(round(share * capacity), 0, capacity))
        return out

    def records(self, t_s: int, skew_s: int = 0) -> tuple[list[dict[str, Any]], int]:
        bucket = t_s - t_s % UPDATE_S
        counts = self.counts(t_s).tolist()
        seq = bucket // UPDATE_S
        records: list[dict[str, Any]] = []
        for i, (a, num) in enumerate(zip(self.areas, counts, strict=True)):
            # Most visitors are inside a monitored zone; the rest are between zones.
            inside = num * (0.8 + 0.1 * float(rnd.uniform(self.seed, 304, i, seq)[()]))
            zone_counts = np.floor(inside * a.zone_shares).astype(np.int64).tolist()
            records.append(
                {
                    "code": a.area.code,
                    "name": a.area.name_zh,
                    "num": num,
                    "maxCapacity": a.area.max_capacity,
                    "seq": seq,
                    "zones": [
                        {"zoneId": f"{a.area.code}-Z{k + 1}", "zoneName": name, "num": n}
                        for k, (name, n) in enumerate(zip(a.zone_names, zone_counts, strict=True))
                    ],
                }
            )
        return records, bucket
