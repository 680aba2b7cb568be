"""Canonical record types, one per feed.

Every record carries the entity id (``id``), the upstream ``source``, ``observed_at`` (event time) and
``expires_at`` as UTC epoch milliseconds, and WGS-84 ``lng``/``lat`` where it has a place. Types and
ranges are declared here so that decoding rejects bad values with a reason (see ``codecs``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

SCHEMA_VERSION = 1

# Epoch milliseconds between 2000-01-01 and 2100-01-01: anything else is a unit or clock error.
EpochMs = Annotated[int, Meta(ge=946_684_800_000, le=4_102_444_800_000)]
Lng = Annotated[float, Meta(ge=-180.0, le=180.0)]
Lat = Annotated[float, Meta(ge=-90.0, le=90.0)]
Bearing = Annotated[float, Meta(ge=0.0, lt=360.0)]
SpeedKmh = Annotated[float, Meta(ge=0.0, le=400.0)]
Count = Annotated[int, Meta(ge=0)]
Percent = Annotated[float, Meta(ge=0.0, le=100.0)]
EntityId = Annotated[str, Meta(min_length=1, max_length=128)]
PowerKw = Annotated[float, Meta(ge=0.0, le=2000.0)]

# GTFS-Realtime OccupancyStatus names, so GTFS-RT output needs no mapping table.
OccupancyStatus = Literal[
    "EMPTY",
    "MANY_SEATS_AVAILABLE",
    "FEW_SEATS_AVAILABLE",
    "STANDING_ROOM_ONLY",
    "CRUSHED_STANDING_ROOM_ONLY",
    "FULL",
    "NOT_ACCEPTING_PASSENGERS",
    "NO_DATA_AVAILABLE",
    "NOT_BOARDABLE",
]

ConnectorStatus = Literal["AVAILABLE", "CHARGING", "RESERVED", "FAULTED", "OFFLINE", "UNKNOWN"]
ConnectorType = Literal["GB_T_AC", "GB_T_DC", "CCS2", "TYPE2", "CHADEMO", "TESLA", "OTHER"]
LotKind = Literal["commuter", "shopping", "scenic", "hospital", "transit", "other"]
LotStatus = Literal["open", "closed", "full", "unknown"]


class VehiclePosition(Struct, kw_only=True, omit_defaults=True):
    """A bus or metro train at a moment (feeds ``bus`` and ``metro``)."""

    id: EntityId
    source: str
    observed_at: EpochMs
    expires_at: EpochMs
    lng: Lng
    lat: Lat
    mode: Literal["bus", "metro"] = "bus"
    route_id: str | None = None
    trip_id: str | None = None
    direction_id: Annotated[int, Meta(ge=0, le=1)] | None = None
    label: str | None = None  # public fleet number painted on the vehicle
    vehicle_id: str | None = None  # stable internal id (licensed and above)
    bearing: Bearing | None = None
    speed_kmh: SpeedKmh | None = None
    occupancy_status: OccupancyStatus | None = None
    occupancy_pct: Percent | None = None
    passenger_count: Count | None = None
    stop_id: str | None = None  # current or next stop / metro station
    next_stop_id: str | None = None
    delay_s: Annotated[int, Meta(ge=-86_400, le=86_400)] | None = None
    seq: Count | None = None  # source sequence number, for duplicate detection
    # Fields some sources send that must never leave the operator tier.
    plate: str | None = None
    driver_id: str | None = None
    diagnostics: dict[str, str] | None = None


class ParkingLot(Struct, kw_only=True, omit_defaults=True):
    """A public car park's free slots (feed ``parking``)."""

    id: EntityId
    source: str
    observed_at: EpochMs
    expires_at: EpochMs
    lng: Lng
    lat: Lat
    name: str | None = None
    capacity: Count | None = None
    free: Count | None = None
    kind: LotKind = "other"
    status: LotStatus = "unknown"
    district: str | None = None
    seq: Count | None = None


class Connector(Struct, kw_only=True, omit_defaults=True):
    id: EntityId
    type: ConnectorType = "OTHER"
    status: ConnectorStatus = "UNKNOWN"
    power_kw: PowerKw | None = None
    fault_code: str | None = None  # operator only


class ChargingStation(Struct, kw_only=True, omit_defaults=True):
    """A charging station and the live status of its connectors (feed ``charging``)."""

    id: EntityId
    source: str
    observed_at: EpochMs
    expires_at: EpochMs
    lng: Lng
    lat: Lat
    name: str | None = None
    operator: str | None = None
    public: bool = True  # OCPI publish=false and home piles are False: never released below operator
    connectors: list[Connector] = msgspec.field(default_factory=list)
    district: str | None = None
    seq: Count | None = None


class ChargingSession(Struct, kw_only=True, omit_defaults=True):
    """One finished charging session (feed ``charging_sessions``): follows a person, so tiers coarsen it."""

    id: EntityId
    source: str
    observed_at: EpochMs
    expires_at: EpochMs
    station_id: EntityId
    connector_id: str | None = None
    lng: Lng | None = None
    lat: Lat | None = None
    started_at: EpochMs
    ended_at: EpochMs
    energy_kwh: Annotated[float, Meta(ge=0.0, le=1000.0)]
    district: str | None = None
    # Never released below operator.
    token_id: str | None = None
    contract_id: str | None = None
    plate: str | None = None
    vin: str | None = None


class ZoneCount(Struct, kw_only=True, omit_defaults=True):
    id: EntityId
    count: Count
    name: str | None = None


class ScenicCount(Struct, kw_only=True, omit_defaults=True):
    """Visitors currently inside a scenic area (feed ``scenic``)."""

    id: EntityId
    source: str
    observed_at: EpochMs
    expires_at: EpochMs
    lng: Lng
    lat: Lat
    name: str | None = None
    count: Count
    capacity: Count | None = None  # maximum instantaneous capacity (最大瞬时承载量)
    zones: list[ZoneCount] | None = None
    district: str | None = None
    seq: Count | None = None


class StopArrival(Struct, kw_only=True, omit_defaults=True):
    """One vehicle run's predicted arrival and departure at one stop (feed ``arrivals``).

    The entity is the (trip run, stop) pair: ``<trip_id>:<start_date>:<start_time>:<stop_sequence>``, so a
    stop's board lists one entry per run coming, and a run's next stops are its entries. Ids are the static
    GTFS feed's; the point, when the static feed places the stop, is the stop's.
    """

    id: EntityId
    source: str
    observed_at: EpochMs
    expires_at: EpochMs
    mode: Literal["bus", "metro"] = "bus"
    trip_id: str
    start_date: str | None = None  # YYYYMMDD service day of the run
    start_time: str | None = None  # HH:MM:SS the run left its first stop (may pass 24:00)
    route_id: str | None = None
    direction_id: Annotated[int, Meta(ge=0, le=1)] | None = None
    stop_id: str
    stop_sequence: Count | None = None
    arrival_at: EpochMs | None = None  # predicted, UTC epoch ms
    departure_at: EpochMs | None = None
    arrival_delay_s: Annotated[int, Meta(ge=-86_400, le=86_400)] | None = None
    departure_delay_s: Annotated[int, Meta(ge=-86_400, le=86_400)] | None = None
    skipped: bool = False  # the run will not call at this stop
    lng: Lng | None = None
    lat: Lat | None = None
    label: str | None = None  # public fleet number
    vehicle_id: str | None = None  # stable internal id (licensed and above)
    district: str | None = None
    plate: str | None = None  # never released below operator


Record = VehiclePosition | ParkingLot | ChargingStation | ChargingSession | ScenicCount | StopArrival

FEED_TYPES: dict[str, type[Struct]] = {
    "bus": VehiclePosition,
    "metro": VehiclePosition,
    "parking": ParkingLot,
    "charging": ChargingStation,
    "charging_sessions": ChargingSession,
    "scenic": ScenicCount,
    "arrivals": StopArrival,
}

FEEDS: tuple[str, ...] = tuple(FEED_TYPES)
