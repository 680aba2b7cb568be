"""Every item's point in WGS-84, converted for a whole list of items in one array pass.

GCJ-02 has no closed-form inverse: one point costs a few iterations of the offset formula, several µs in
Python, the largest part of parsing a whole-fleet bus response. The array functions of geo/crs.py do the
same iterations for all points at once. ``to_wgs84`` (common.py) stays the one place that
checks a point and says why it is refused; it looks the converted point up here first.

The array pass iterates until every point of the batch has converged, so a point's last bits depend on the
batch it came in. A point converted once therefore keeps its value (``MEMO``): a bus standing still is
published with the same coordinates poll after poll, and the change filter must see the same record, not a
"move" in the fifteenth decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geo import crs as geo_crs

from .common import Converted, ItemError, JsonDict, crs_name, on_globe, req_num, to_wgs84


class PointMemo:
    """Converted points by (system, lng, lat), in two generations: when the newer fills up, the older is
    dropped, and a point asked for again moves to the newer, so the points of a fleet's standing vehicles,
    asked for every poll, are never forgotten."""

    def __init__(self, generation: int = 200_000) -> None:
        self.generation = generation
        self.newer: Converted = {}
        self.older: Converted = {}

    def get(self, key: tuple[str, float, float]) -> tuple[float, float] | None:
        done = self.newer.get(key)
        if done is None:
            done = self.older.get(key)
            if done is not None:
                self.put(key, done)
        return done

    def put(self, key: tuple[str, float, float], done: tuple[float, float]) -> None:
        if len(self.newer) >= self.generation:
            self.older, self.newer = self.newer, {}
        self.newer[key] = done


MEMO = PointMemo()


class ItemPoints:
    """The points of ``items`` (``lng_key``, ``lat_key`` in the system ``crs_key`` names, WGS-84 if absent)."""

    __slots__ = ("converted", "crs_key", "lat_key", "lng_key")

    def __init__(
        self, items: Sequence[Any], lng_key: str = "lng", lat_key: str = "lat", crs_key: str = "coordType"
    ) -> None:
        self.lng_key, self.lat_key, self.crs_key = lng_key, lat_key, crs_key
        self.converted: Converted = {}
        published: dict[str, list[tuple[float, float]]] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            name = crs_name(item.get(crs_key))
            if name == "wgs84" or name not in geo_crs.CRS_NAMES:
                continue  # WGS-84 already, or a system to_wgs84 refuses with its reason
            try:
                lng, lat = req_num(item, lng_key), req_num(item, lat_key)
            except ItemError:
                continue  # refused, with its reason, when the item is built
            if not on_globe(lng, lat):
                continue
            known = MEMO.get((name, lng, lat))
            if known is not None:
                self.converted[(name, lng, lat)] = known
            else:
                published.setdefault(name, []).append((lng, lat))
        for name, points in published.items():
            lngs, lats = geo_crs.convert_arrays([p[0] for p in points], [p[1] for p in points], name, "wgs84")
            for (lng, lat), done in zip(points, zip(lngs.tolist(), lats.tolist(), strict=True), strict=True):
                self.converted[(name, lng, lat)] = done
                MEMO.put((name, lng, lat), done)

    def of(self, item: JsonDict) -> tuple[float, float]:
        """The item's point in WGS-84, or the ItemError that says why it has none."""
        lng, lat = req_num(item, self.lng_key), req_num(item, self.lat_key)
        return to_wgs84(lng, lat, item.get(self.crs_key), self.converted)
