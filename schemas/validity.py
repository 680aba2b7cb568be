"""How long a record stays current, and since when what it says is known: the contract between the
adapters, which set ``expires_at``, and the stream stages, which mark staleness and delay lower tiers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# How long a record stays current if the source says nothing newer: a few poll intervals per feed.
TTL_MS: dict[str, int] = {
    "bus": 120_000,
    "metro": 120_000,
    "parking": 900_000,
    "charging": 900_000,
    "scenic": 900_000,
    "charging_sessions": 86_400_000,
    "arrivals": 120_000,
}

# State feeds list every entity on every poll with its last change time, and each response vouches that
# the listed state still holds: their ``expires_at`` counts from the later of the two.
VOUCHED_FEEDS = frozenset({"parking", "charging", "scenic"})


def valid_until(feed: str, observed_ms: int, vouched_ms: int | None = None) -> int:
    """``expires_at`` of a record observed at ``observed_ms`` and vouched for at ``vouched_ms``."""
    return max(observed_ms, vouched_ms if vouched_ms is not None else observed_ms) + TTL_MS[feed]


def known_since(feed: str, record: Mapping[str, Any]) -> int:
    """Since when what ``record`` says is known: its ``observed_at``, or for a state vouched for later, the
    time of that voucher. A delayed tier counts its delay from here, so that a refresh of an old state
    does not tell a lower tier, before its delay, that the state still held just now."""
    observed: int = record["observed_at"]
    if feed not in VOUCHED_FEEDS:
        return observed
    return max(observed, int(record["expires_at"]) - TTL_MS[feed])
