"""Topic names owned by ``streams/`` on top of the contract's (``schemas/topics.py``).

- ``pending.<tier>.<feed>``: a delayed tier's records, already through the policy (the tier topic's key,
  value and timestamp), waiting for their release time. The clean stage writes them; the tier's delay
  stage forwards each once its timestamp plus the delay has passed. The wait is in Kafka, not in memory,
  so a delay survives a crash: a record is forwarded (and its offset committed) only when it is due.
  The operator tier is never delayed (the policy loader enforces it), so it has no pending topics.
- aggregate feeds (``agg_*``): continuously updated aggregates, published like any feed to
  ``tier.<tier>.<agg>`` (through ``pending.<tier>.<agg>`` where the tier is delayed).
"""

from __future__ import annotations

from schemas import FEEDS, TIERS
from streams.logic.aggregate_records import AGGREGATE_TYPES

# agg_vehicles: vehicles per route and per district (bus + metro); agg_parking: free slots and occupancy per
# district and near each scenic area; agg_charging: connector availability per district and per connector
# type; agg_scenic: crowding level against capacity with a 15-minute trend.
AGGREGATE_FEEDS: tuple[str, ...] = tuple(AGGREGATE_TYPES)

PIPELINE_FEEDS: tuple[str, ...] = FEEDS + AGGREGATE_FEEDS
DELAYABLE_TIERS: tuple[str, ...] = TIERS[1:]


def _check(feed: str) -> str:
    if feed not in PIPELINE_FEEDS:
        raise ValueError(f"unknown feed {feed!r}; known: {', '.join(PIPELINE_FEEDS)}")
    return feed


def pending_topic(tier: str, feed: str) -> str:
    if tier not in DELAYABLE_TIERS:
        raise ValueError(f"tier {tier!r} is never delayed; delayable tiers: {', '.join(DELAYABLE_TIERS)}")
    return f"pending.{tier}.{_check(feed)}"


def pipeline_tier_topic(tier: str, feed: str) -> str:
    """``tier.<tier>.<feed>`` for source and aggregate feeds alike (same format as ``schemas.tier_topic``)."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}")
    return f"tier.{tier}.{_check(feed)}"


def all_aggregate_topics() -> list[str]:
    """Every topic streams/ adds to the contract's list (ensure_topics creates these too)."""
    names = [pending_topic(t, f) for f in PIPELINE_FEEDS for t in DELAYABLE_TIERS]
    names += [pipeline_tier_topic(t, f) for f in AGGREGATE_FEEDS for t in TIERS]
    return names
