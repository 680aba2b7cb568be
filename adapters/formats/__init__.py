"""Source formats: one module each with ``parse(data, *, source, received_at_ms) -> ParseResult``; a module
whose responses can be long lists also has ``parse_chunks`` (same arguments), yielding the result in parts."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .result import ParseResult


@dataclass(frozen=True)
class QueryWindow:
    """How a format's server is asked only for what is new, page by page (the OCPI modules' GET).

    The poller sends ``param`` = the newest ``observed_at`` it has ingested (ISO 8601 UTC, inclusive: a
    repeat is skipped as unchanged, a gap would be a loss); on its first poll, ``lookback_s`` before now.
    With ``follow_next`` it then reads every ``Link: <...>; rel="next"`` page in the same poll.
    """

    param: str
    lookback_s: float = 3600.0
    follow_next: bool = True


@dataclass(frozen=True)
class FormatSpec:
    name: str
    module: str
    feed: str  # the feed its records go to (GTFS-RT: the default, a source may say metro)
    description: str
    window: QueryWindow | None = None  # None: the whole current state is fetched from one URL each poll
    # ``parse_chunks`` takes ``unchanged`` and skips the items whose record the runtime already holds
    # (sh_envelope.RepeatKey): only formats whose record depends on the item alone.
    skips_unchanged: bool = False

    @property
    def parse(self) -> Callable[..., ParseResult]:
        parser: Callable[..., ParseResult] = importlib.import_module(self.module).parse
        return parser

    @property
    def parse_chunks(self) -> Callable[..., Iterator[ParseResult]]:
        """The parser yielding its result chunk by chunk; a format without chunks yields ``parse``'s whole."""
        module = importlib.import_module(self.module)
        chunks: Callable[..., Iterator[ParseResult]] | None = getattr(module, "parse_chunks", None)
        if chunks is not None:
            return chunks
        parse = self.parse

        def whole(data: bytes, **kwargs: Any) -> Iterator[ParseResult]:
            yield parse(data, **kwargs)

        return whole


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("sh-bus-gps", "adapters.formats.sh_bus_gps", "bus", "Shanghai bus GPS JSON", skips_unchanged=True),
        FormatSpec("sh-parking", "adapters.formats.sh_parking", "parking", "Shanghai parking free slots JSON"),
        FormatSpec("sh-charging", "adapters.formats.sh_charging", "charging", "Shanghai charging piles JSON"),
        FormatSpec("sh-scenic", "adapters.formats.sh_scenic", "scenic", "Shanghai scenic visitor counts JSON"),
        FormatSpec("gtfs-rt-vp", "adapters.formats.gtfs_rt_vp", "bus", "GTFS-Realtime VehiclePositions"),
        FormatSpec("gtfs-rt-tu", "adapters.formats.gtfs_rt_tu", "bus", "GTFS-Realtime TripUpdates"),
        FormatSpec(
            "gtfs-rt-arrivals",
            "adapters.formats.gtfs_rt_arrivals",
            "arrivals",
            "GTFS-Realtime TripUpdates, every stop's predicted arrival and departure",
        ),
        FormatSpec("ocpi-locations", "adapters.formats.ocpi_locations", "charging", "OCPI 2.2.1 Locations"),
        FormatSpec(
            "ocpi-cdrs",
            "adapters.formats.ocpi_cdrs",
            "charging_sessions",
            "OCPI 2.2.1 CDRs (finished charging sessions)",
            window=QueryWindow("date_from"),
        ),
        FormatSpec("parking-geojson", "adapters.formats.parking_geojson", "parking", "ParkAPI-style GeoJSON"),
        FormatSpec(
            "parking-geojson-utm",
            "adapters.formats.parking_geojson_utm",
            "parking",
            "GeoJSON in EPSG:25832 (UTM 32N metres)",
        ),
        FormatSpec("parking-ngsi", "adapters.formats.parking_ngsi", "parking", "FIWARE NGSI-v2 OffStreetParking"),
    )
}


def get_format(name: str) -> FormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}") from None


def parse_with(name: str, data: bytes, *, source: str, received_at_ms: int, **options: Any) -> ParseResult:
    return get_format(name).parse(data, source=source, received_at_ms=received_at_ms, **options)


__all__ = ["FORMATS", "FormatSpec", "ParseResult", "QueryWindow", "get_format", "parse_with"]
