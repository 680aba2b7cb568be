"""Shanghai Metro stations (2017 network, 302 stations, WGS-84) and their lines, with nearest-station lookup.

Source files are bundled in ``geo/data`` (see ``geo/data/README.md``). Station ids are the source's
``stationID`` values as strings; names are English only.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .grid import local_metres

DATA_DIR = Path(__file__).resolve().parent / "data"
STATIONS_FILE = DATA_DIR / "stationInfo.csv"
LINES_FILE = DATA_DIR / "station_lines_2017.csv"

# Reference point for the metric distances of the nearest-station search (People's Square).
_LNG0 = 121.4705
_LAT0 = 31.2349
# Points per block in the brute-force search: bounds memory at block × 302 doubles.
_BLOCK = 4096


@dataclass(frozen=True, slots=True)
class Station:
    id: str
    name: str
    lng: float
    lat: float
    lines: tuple[str, ...]
    neighbours: tuple[str, ...]


class MetroNetwork:
    """The stations, indexed by id, with a vectorised nearest-station query."""

    def __init__(self, stations: list[Station]) -> None:
        if not stations:
            raise ValueError("a metro network needs at least one station")
        self.stations: tuple[Station, ...] = tuple(stations)
        self._by_id = {s.id: s for s in stations}
        self.ids: NDArray[np.object_] = np.array([s.id for s in stations], dtype=object)
        self.lngs = np.array([s.lng for s in stations])
        self.lats = np.array([s.lat for s in stations])
        self._sx, self._sy = local_metres(self.lngs, self.lats, _LNG0, _LAT0)

    def __len__(self) -> int:
        return len(self.stations)

    def station(self, station_id: str) -> Station:
        try:
            return self._by_id[station_id]
        except KeyError:
            raise KeyError(f"unknown metro station id {station_id!r}") from None

    def get(self, station_id: str) -> Station | None:
        return self._by_id.get(station_id)

    def lines(self) -> dict[str, list[str]]:
        """Line name → station ids on it (in file order)."""
        out: dict[str, list[str]] = {}
        for s in self.stations:
            for line in s.lines:
                out.setdefault(line, []).append(s.id)
        return out

    def nearest(self, lngs: ArrayLike, lats: ArrayLike) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Index into ``stations`` of the nearest station to each WGS-84 point, and the distance in metres
        (local plane about People's Square: within ~0.5 % inside the metro's extent). Ties go to the
        station listed first."""
        x = np.atleast_1d(np.asarray(lngs, dtype=np.float64))
        y = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        if x.shape != y.shape:
            raise ValueError(f"lngs and lats differ in shape: {x.shape} vs {y.shape}")
        px, py = local_metres(x.ravel(), y.ravel(), _LNG0, _LAT0)
        index = np.empty(px.size, dtype=np.intp)
        dist = np.empty(px.size, dtype=np.float64)
        for start in range(0, px.size, _BLOCK):
            bx = px[start : start + _BLOCK, None] - self._sx[None, :]
            by = py[start : start + _BLOCK, None] - self._sy[None, :]
            d2 = bx * bx + by * by
            best = np.argmin(d2, axis=1)
            index[start : start + best.size] = best
            dist[start : start + best.size] = np.sqrt(d2[np.arange(best.size), best])
        return index.reshape(x.shape), dist.reshape(x.shape)

    def nearest_station(self, lng: float, lat: float) -> Station:
        index, _ = self.nearest([lng], [lat])
        return self.stations[int(index[0])]


def _load(stations_path: Path, lines_path: Path) -> MetroNetwork:
    with lines_path.open(encoding="utf-8", newline="") as f:
        lines_by_name = {
            row["Station Name"].strip(): tuple(p.strip() for p in row["Metro Line(s)"].split(",") if p.strip())
            for row in csv.DictReader(f)
        }
    stations: list[Station] = []
    with stations_path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            name = row["name"].strip()
            neighbours = ast.literal_eval(row["neighbour"]) if row["neighbour"].strip() else []
            stations.append(
                Station(
                    id=str(int(row["stationID"])),
                    name=name,
                    lng=float(row["lon"]),
                    lat=float(row["lat"]),
                    lines=lines_by_name.get(name, ()),
                    neighbours=tuple(str(int(n)) for n in neighbours),
                )
            )
    return MetroNetwork(stations)


@cache
def metro_network() -> MetroNetwork:
    """The bundled network, loaded on first use."""
    return _load(STATIONS_FILE, LINES_FILE)


def nearest_station_ids(lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.object_]:
    """Id of the nearest metro station to each WGS-84 point."""
    network = metro_network()
    index, _ = network.nearest(lngs, lats)
    return network.ids[index]
