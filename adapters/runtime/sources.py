"""The configured sources: name → format, feed, where to fetch it and how often."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.formats.ocpi_auth import authorization_header
from settings import Settings


@dataclass(frozen=True)
class SourceConfig:
    name: str
    format: str
    feed: str
    path: str  # on the simulator (or the city's endpoint when ``url`` is given)
    interval_s: float
    timeout_s: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)  # passed to the parser
    url: str | None = None  # overrides simulator_url + path
    ocpi: bool = False  # an OCPI endpoint: requests present the settings' OCPI token
    # An OCPI Locations list read whole each poll and reconciled with the push receiver (location_sync.py).
    full_sync: bool = False

    def request_headers(self, settings: Settings) -> dict[str, str]:
        if self.ocpi and settings.ocpi_token:
            return {"Authorization": authorization_header(settings.ocpi_token)}
        return {}

    def resolved_url(self, settings: Settings) -> str:
        return self.url or settings.simulator_url.rstrip("/") + self.path


SOURCES: dict[str, SourceConfig] = {
    config.name: config
    for config in (
        SourceConfig("sh-bus", "sh-bus-gps", "bus", "/bus/gps.json", interval_s=10.0),
        SourceConfig(
            "sh-metro",
            "gtfs-rt-vp",
            "metro",
            "/metro/vehicle-positions.pb",
            interval_s=10.0,
            options={"mode": "metro", "shanghai": True},
        ),
        # Predicted arrivals of the same buses and trains, every stop ahead of each (GTFS-RT TripUpdates).
        SourceConfig(
            "sh-bus-arrivals",
            "gtfs-rt-arrivals",
            "arrivals",
            "/bus/trip-updates.pb",
            interval_s=30.0,
            options={"mode": "bus"},
        ),
        SourceConfig(
            "sh-metro-arrivals",
            "gtfs-rt-arrivals",
            "arrivals",
            "/metro/trip-updates.pb",
            interval_s=15.0,
            options={"mode": "metro"},
        ),
        SourceConfig("sh-parking", "sh-parking", "parking", "/parking/lots.json", interval_s=60.0),
        SourceConfig("sh-charging", "sh-charging", "charging", "/charging/stations.json", interval_s=30.0),
        SourceConfig("sh-scenic", "sh-scenic", "scenic", "/scenic/visitors.json", interval_s=60.0),
        # OCPI CDRs: each poll asks for what is new since the last (date_from) and follows the next pages.
        SourceConfig(
            "sh-charging-sessions",
            "ocpi-cdrs",
            "charging_sessions",
            "/ocpi/2.2.1/cdrs?limit=500",
            interval_s=60.0,
            ocpi=True,
        ),
        # OCPI Locations: the full sync that pairs with the push receiver, every page each time.
        SourceConfig(
            "sh-charging-locations",
            "ocpi-locations",
            "charging",
            "/ocpi/2.2.1/locations?limit=500",
            interval_s=300.0,
            ocpi=True,
            full_sync=True,
        ),
    )
}

# Sources that push to us rather than being polled (see ``push.py``).
PUSH_SOURCES: dict[str, str] = {"ocpi-push": "ocpi-locations"}


def get_source(name: str) -> SourceConfig:
    try:
        return SOURCES[name]
    except KeyError:
        known = ", ".join([*SOURCES, *PUSH_SOURCES])
        raise ValueError(f"unknown source {name!r}; known sources: {known}") from None
