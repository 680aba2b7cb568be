"""The simulated city: one clock and every feed built on it, for a seed."""

from __future__ import annotations

from collections.abc import Callable

from adapters.simulators.bus import BusFleet
from adapters.simulators.charging import ChargingNetwork
from adapters.simulators.clock import SimClock
from adapters.simulators.metro import MetroTrains
from adapters.simulators.parking import ParkingLots
from adapters.simulators.rendering import BinaryFeed, Feed, JsonFeed
from adapters.simulators.scenic import ScenicAreas
from adapters.simulators.trip_updates import TripUpdates

DEFAULT_BUSES = 17_000
DEFAULT_LOTS = 5_000
DEFAULT_CONNECTORS = 20_000
GTFS_RT_CONTENT_TYPE = "application/x-protobuf"


class SimulatedCity:
    """Shanghai's upstream feeds, deterministic for ``seed``, on a clock running ``time_scale`` × real time.

    ``start_ms`` is the simulated UTC epoch ms at construction (default: now). Counts default to the full
    city; tests pass small ones. ``monotonic`` replaces the real clock (tests drive time by hand).
    """

    def __init__(
        self,
        seed: int = 1,
        *,
        start_ms: int | None = None,
        time_scale: float = 1.0,
        buses: int = DEFAULT_BUSES,
        lots: int = DEFAULT_LOTS,
        connectors: int = DEFAULT_CONNECTORS,
        private_pile_share: float = 0.02,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.seed = seed
        if monotonic is None:
            self.clock = SimClock(start_ms, time_scale)
        else:
            self.clock = SimClock(start_ms, time_scale, monotonic)
        self.bus = BusFleet(seed, buses)
        self.metro = MetroTrains(seed)
        self.parking = ParkingLots(seed, lots)
        self.charging = ChargingNetwork(seed, connectors, self.clock.start_ms // 1000, private_pile_share)
        self.scenic = ScenicAreas(seed)
        self.trip_updates = TripUpdates(self.bus, self.metro)
        self.feeds: dict[str, Feed] = {}
        for feed in (
            JsonFeed("bus", "/bus/gps.json", "data", "obuId", "updateTime", self.bus.records),
            BinaryFeed("metro", "/metro/vehicle-positions.pb", GTFS_RT_CONTENT_TYPE, self.metro.feed),
            JsonFeed("parking", "/parking/lots.json", "data", "parkId", "updateTime", self.parking.records),
            JsonFeed(
                "charging", "/charging/stations.json", "stations", "stationId", "updateTime", self.charging.records
            ),
            JsonFeed("scenic", "/scenic/visitors.json", "list", "code", "time", self.scenic.records),
            # Predicted arrivals of the same vehicles (GTFS-Realtime TripUpdates).
            BinaryFeed("bus_trip_updates", "/bus/trip-updates.pb", GTFS_RT_CONTENT_TYPE, self.trip_updates.bus_feed),
            BinaryFeed(
                "metro_trip_updates", "/metro/trip-updates.pb", GTFS_RT_CONTENT_TYPE, self.trip_updates.metro_feed
            ),
        ):
            self.feeds[feed.name] = feed

    def now_s(self) -> int:
        return self.clock.now_s()

    def render(self, feed: str, t_s: int | None = None) -> bytes:
        """The feed's response body at simulated second ``t_s`` (default: now), without faults."""
        if feed not in self.feeds:
            raise KeyError(f"unknown feed {feed!r}; the city serves {', '.join(self.feeds)}")
        return self.feeds[feed].render(self.now_s() if t_s is None else t_s, None, 0).body
