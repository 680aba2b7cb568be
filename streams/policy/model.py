"""The loaded, validated policy: plain frozen data the engine reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from geo.service_day import ServiceDay


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One operation on one field at one tier, e.g. ``position`` → ``grid`` with ``cell_m = 50``."""

    field: str
    op: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RecordRule:
    """One record-level step at one tier (filter, aggregate, derived field)."""

    op: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TierRule:
    tier: str
    delay_ms: int = 0
    min_interval_ms: int = 0
    latency_target_ms: int | None = None
    crs: tuple[str, ...] = ("gcj02",)
    coord_decimals: int = 6
    note: str = ""
    fields: tuple[FieldRule, ...] = ()
    records: tuple[RecordRule, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedPolicy:
    feed: str
    never_released: frozenset[str]
    tiers: Mapping[str, TierRule]  # every tier, in TIERS order


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    source: str  # where it was loaded from, for messages
    feeds: Mapping[str, FeedPolicy] = field(default_factory=dict)
    # When rotating pseudonyms turn over: a local service-day boundary (``[pseudonyms]`` in the file).
    pseudonym_days: ServiceDay = field(default_factory=lambda: ServiceDay("Asia/Shanghai", 3 * 3600))
