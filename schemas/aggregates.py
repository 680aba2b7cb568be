"""Record types of the aggregate feeds (``agg_*``): the feeds the stream layer computes from the source feeds.

They sit in ``schemas/`` beside the source records because they are part of the contract too: clients
receive them on ``tier.<tier>.agg_*``, the policy loader (``streams/policy/``) reads their fields, and the
topic names in ``schemas/topics.py`` are built from their feed names.

Like the canonical records they carry ``id``, ``source`` (always ``"streams"``), ``observed_at`` (when the
aggregate was computed, UTC epoch ms) and ``expires_at``. The policy loader reads field names and kinds from
these types, so the tier policy can name their fields exactly as it does for the source feeds.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

Count = Annotated[int, Meta(ge=0)]
Percent = Annotated[float, Meta(ge=0.0, le=100.0)]

AGGREGATE_SOURCE = "streams"
CrowdingLevel = Literal["comfortable", "busy", "crowded", "saturated"]
Trend = Literal["rising", "steady", "falling"]


class VehicleAggregate(Struct, kw_only=True, omit_defaults=True):
    """Vehicles in service per route or per district (feed ``agg_vehicles``), from bus and metro."""

    id: str  # "<mode>:route:<route_id>" or "<mode>:district:<adcode>"
    source: str
    observed_at: int
    expires_at: int
    mode: Literal["bus", "metro"]
    group: Literal["route", "district"]
    key: str
    vehicles: Count


class ParkingAggregate(Struct, kw_only=True, omit_defaults=True):
    """Free slots and occupancy of the car parks in a district or near a scenic area (``agg_parking``)."""

    id: str  # "district:<adcode>" or "scenic:<area code>"
    source: str
    observed_at: int
    expires_at: int
    group: Literal["district", "scenic"]
    key: str
    name: str | None = None
    lots: Count  # lots with a current report
    capacity: Count  # total slots of the lots that report a capacity
    free: Count
    occupancy_pct: Percent | None = None  # 100 × (capacity − free) / capacity, over lots reporting both


class ChargingAggregate(Struct, kw_only=True, omit_defaults=True):
    """Connector availability of public stations per district or per connector type (``agg_charging``)."""

    id: str  # "district:<adcode>" or "type:<connector type>"
    source: str
    observed_at: int
    expires_at: int
    group: Literal["district", "connector_type"]
    key: str
    stations: Count
    connectors: Count
    available: Count
    out_of_service: Count = 0  # FAULTED or OFFLINE connectors


class ScenicAggregate(Struct, kw_only=True, omit_defaults=True):
    """Crowding of one scenic area against its capacity, with the 15-minute trend (``agg_scenic``)."""

    id: str  # the scenic area's code
    source: str
    observed_at: int
    expires_at: int
    lng: float | None = None  # the area's public reference point
    lat: float | None = None
    name: str | None = None
    district: str | None = None
    count: Count
    capacity: Count | None = None
    occupancy_pct: Percent | None = None
    crowding: CrowdingLevel | None = None
    trend: Trend | None = None  # against the count 15 minutes earlier; absent until that is known
    change_15min: int | None = None


AGGREGATE_TYPES: dict[str, type[Struct]] = {
    "agg_vehicles": VehicleAggregate,
    "agg_parking": ParkingAggregate,
    "agg_charging": ChargingAggregate,
    "agg_scenic": ScenicAggregate,
}


def validate_aggregate(feed: str, data: dict[str, object]) -> Struct:
    """Convert to the feed's type, raising ``msgspec.ValidationError`` on a bad value (used by tests)."""
    return msgspec.convert(data, AGGREGATE_TYPES[feed])
