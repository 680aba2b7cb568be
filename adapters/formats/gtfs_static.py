"""The parts of a static GTFS feed the GTFS-RT parsers use: stops, trips, routes, schedule, time zone."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TripInfo:
    route_id: str
    direction_id: int | None


@dataclass(frozen=True)
class ScheduledStop:
    stop_id: str
    arrival_s: int | None  # seconds after "noon minus 12 h" of the service day (may exceed 24 h)
    departure_s: int | None


@dataclass
class GtfsStatic:
    timezone: str = "UTC"
    stops: dict[str, tuple[float, float]] = field(default_factory=dict)  # stop_id → (lng, lat)
    trips: dict[str, TripInfo] = field(default_factory=dict)
    route_types: dict[str, int] = field(default_factory=dict)
    # trip_id → stop_sequence → scheduled stop
    schedule: dict[str, dict[int, ScheduledStop]] = field(default_factory=dict)


def gtfs_seconds(text: str) -> int | None:
    """``H:MM:SS`` (hours may pass 24) → seconds; blank → None."""
    text = text.strip()
    if not text:
        return None
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    path = folder / name
    if not path.exists():
        return []
    # utf-8-sig: many agencies' files start with a byte-order mark.
    text = path.read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def load_static(folder: Path) -> GtfsStatic:
    """Read the unpacked static feed in ``folder``; missing optional files leave their part empty."""
    folder = Path(folder)
    if not (folder / "stops.txt").exists():
        raise ValueError(f"{folder} has no stops.txt: not a static GTFS folder")
    static = GtfsStatic()
    agencies = _rows(folder, "agency.txt")
    if agencies and agencies[0].get("agency_timezone"):
        static.timezone = agencies[0]["agency_timezone"].strip()
    for row in _rows(folder, "stops.txt"):
        try:
            static.stops[row["stop_id"]] = (float(row["stop_lon"]), float(row["stop_lat"]))
        except (KeyError, TypeError, ValueError):
            continue  # stations without coordinates (e.g. generic nodes) cannot place anything
    for row in _rows(folder, "routes.txt"):
        try:
            static.route_types[row["route_id"]] = int(row["route_type"])
        except (KeyError, TypeError, ValueError):
            continue
    for row in _rows(folder, "trips.txt"):
        direction = (row.get("direction_id") or "").strip()
        static.trips[row["trip_id"]] = TripInfo(
            route_id=row["route_id"], direction_id=int(direction) if direction in ("0", "1") else None
        )
    for row in _rows(folder, "stop_times.txt"):
        try:
            stop = ScheduledStop(
                stop_id=row["stop_id"],
                arrival_s=gtfs_seconds(row.get("arrival_time") or ""),
                departure_s=gtfs_seconds(row.get("departure_time") or ""),
            )
            static.schedule.setdefault(row["trip_id"], {})[int(row["stop_sequence"])] = stop
        except (KeyError, TypeError, ValueError):
            continue
    return static
