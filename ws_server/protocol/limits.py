"""Per-connection limits by tier, and the token bucket that enforces the message rate."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# Which coordinate systems each tier may receive (docs/design-notes.md: WGS-84 from licensed up).
CRS_BY_TIER: dict[str, frozenset[str]] = {
    "operator": frozenset({"gcj02", "wgs84"}),
    "licensed": frozenset({"gcj02", "wgs84"}),
    "registered": frozenset({"gcj02"}),
    "public": frozenset({"gcj02"}),
}


@dataclass(frozen=True)
class Limits:
    max_subscriptions: int = 10
    messages_per_s: float = 10.0  # client → server messages
    burst: int = 20
    flood_drops: int = 50  # rate-limited messages within flood_window_ms before the connection is closed
    flood_window_ms: int = 10_000
    byte_budget: int = 1 << 20  # unsent bytes a connection may hold before it is served conflated
    slow_after_ms: int = 15_000  # behind this long (or too far) and it is closed as slow
    max_conflated: int = 100_000  # distinct entities owed to a behind subscription
    max_connections: int = 20  # per IP (public) or per key
    # Distinct streams an IP (public) or key may have the node keep (idle ones too, until freed): 20
    # connections of 10 subscriptions each can hold 200; churn cannot pile up orphans beyond that.
    max_streams: int = 200
    # Polygon vertices validated per minute for an IP (public) or key: ten of the largest polygons allowed.
    # Filters already in use by anyone cost nothing.
    vertices_per_minute: int = 50_000

    def with_overrides(self, overrides: dict[str, Any]) -> Limits:
        """Limits stored with an API key override the tier defaults (unknown names are ignored)."""
        known: dict[str, Any] = {
            k: v for k, v in overrides.items() if k in self.__dataclass_fields__ and isinstance(v, int | float)
        }
        return replace(self, **known)


DEFAULT_LIMITS: dict[str, Limits] = {
    "public": Limits(),
    "registered": Limits(
        max_subscriptions=25,
        messages_per_s=20.0,
        burst=40,
        max_connections=50,
        max_streams=500,
        vertices_per_minute=100_000,
    ),
    "licensed": Limits(
        max_subscriptions=100,
        messages_per_s=50.0,
        burst=100,
        byte_budget=4 << 20,
        max_connections=500,
        max_streams=2000,
        vertices_per_minute=500_000,
    ),
    "operator": Limits(
        max_subscriptions=200,
        messages_per_s=100.0,
        burst=200,
        byte_budget=8 << 20,
        max_connections=1000,
        max_streams=4000,
        vertices_per_minute=1_000_000,
    ),
}


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, now_ms: int) -> None:
        self.rate = rate_per_s / 1000.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now_ms

    def take(self, now_ms: int, amount: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_ms - self.at) * self.rate)
        self.at = now_ms
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False
