"""Enrichment of clean records with place context: district, scenic area, nearest metro station.

Lookups are vectorised over the whole batch (one call per batch and lookup, see baselines.md: a shapely
point-in-polygon test per point is five times slower than one over an array). The lookups come from
``geo``; the functions are injected so the logic is testable with any lookup.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Lookup = Callable[[np.ndarray, np.ndarray], Sequence[Any]]

# Which lookups make sense per feed. Metro trains already name their station (stop_id).
ENRICH_FIELDS: dict[str, tuple[str, ...]] = {
    "bus": ("district", "scenic_area"),
    "metro": ("district",),
    "parking": ("district", "scenic_area", "nearest_station"),
    "charging": ("district", "scenic_area", "nearest_station"),
    "charging_sessions": ("district",),
    "scenic": ("district", "nearest_station"),
}


class Enricher:
    def __init__(self, lookups: dict[str, Lookup]) -> None:
        self.lookups = lookups

    @classmethod
    def from_geo(cls) -> Enricher:
        """Use the ``geo`` package's lookups that are installed; missing ones are skipped with a warning."""
        wanted = {
            "district": ("geo.districts", "district_of"),
            "scenic_area": ("geo.scenic", "scenic_area_of"),
            "nearest_station": ("geo.metro", "nearest_station_ids"),
        }
        lookups: dict[str, Lookup] = {}
        for name, (module, func) in wanted.items():
            try:
                lookups[name] = getattr(importlib.import_module(module), func)
            except (ImportError, AttributeError) as err:
                log.warning("enrichment %s unavailable: %s", name, err)
        return cls(lookups)

    def enrich(self, feed: str, records: list[dict[str, Any]]) -> None:
        """Add the feed's place fields in place; a value the source already sent is kept."""
        fields = [f for f in ENRICH_FIELDS.get(feed, ()) if f in self.lookups]
        if not records or not fields:
            return
        placed = [r for r in records if r.get("lng") is not None and r.get("lat") is not None]
        if not placed:
            return
        lngs = np.fromiter((r["lng"] for r in placed), np.float64, len(placed))
        lats = np.fromiter((r["lat"] for r in placed), np.float64, len(placed))
        for name in fields:
            values = self.lookups[name](lngs, lats)
            for rec, value in zip(placed, values, strict=True):
                if value is not None and rec.get(name) is None:
                    rec[name] = value if isinstance(value, str) else str(value)
