"""Every Kafka topic name the service uses, in one place: each name is spelled here and only here.

- ``raw.<feed>``: validated canonical records from the adapters (source feeds).
- ``dlq.<feed>``: upstream input that could not be parsed or validated (original bytes and the reason), and
  records the stream layer turns away (e.g. a charging session late for its released time window).
- ``tier.<tier>.<feed>``: records as a tier may see them, after the policy engine; for the source feeds and
  the aggregate feeds (``agg_*``, ``schemas/aggregates.py``) alike.
- ``pending.<tier>.<feed>``: a delayed tier's records, already through the policy, waiting in Kafka for their
  release time (so a delay survives a crash); the tier's delay stage forwards each once it is due. The
  operator tier is never delayed, so it has none.
- ``audit.access``: the WebSocket servers' access log of licensed deliveries, as hash chains.
- ``audit.checkpoints``: signed checkpoints of those chains' heads, kept apart from them, so a truncated
  or deleted chain is detected (``ws_server/audit_checkpoint.py``).
- ``audit.operator``: every operator action on agreements and feedback (and each application), one JSON
  entry per action (``agreements/action_log.py``); kept like the access log.
- ``ops.stats`` and ``ops.alerts``: the stages' and adapters' per-batch figures, and the alert events the
  control plane decides (``control_plane/``); created by the control plane with one partition, as its
  Faust tables are partitioned like them, so not among ``all_topics()``.
- ``state.ocpi_locations``: the OCPI Locations the charging adapters learned (pushed by operators or read by
  the full sync), whole, keyed by ``<country_code>*<party_id>*<id>``; compacted, so it holds the latest of
  each. A restarted push receiver rebuilds what it knows from it (``adapters/runtime/location_log.py``), which
  creates it, so it is not among ``all_topics()`` either.

Tests and benchmarks put a prefix in front of every name (``schemas/naming.py`` applies it).
"""

from __future__ import annotations

from .aggregates import AGGREGATE_TYPES
from .records import FEEDS

TIERS: tuple[str, ...] = ("operator", "licensed", "registered", "public")  # most precise first
DELAYABLE_TIERS: tuple[str, ...] = TIERS[1:]

# agg_vehicles: vehicles per route and per district (bus + metro); agg_parking: free slots and occupancy per
# district and near each scenic area; agg_charging: connector availability per district and per connector
# type; agg_scenic: crowding level against capacity with a 15-minute trend.
AGGREGATE_FEEDS: tuple[str, ...] = tuple(AGGREGATE_TYPES)
PIPELINE_FEEDS: tuple[str, ...] = FEEDS + AGGREGATE_FEEDS  # every feed with tier topics

AUDIT_ACCESS = "audit.access"
AUDIT_CHECKPOINTS = "audit.checkpoints"
# The access log is kept at least six months (the tier policy's rule for licensed deliveries), whatever the
# broker's default retention, and never trimmed by size: 190 days, so a six-month audit always finds it.
AUDIT_RETENTION_MS = 190 * 24 * 3600 * 1000
AUDIT_TOPIC_CONFIG: dict[str, str] = {
    "retention.ms": str(AUDIT_RETENTION_MS),
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}
AUDIT_OPERATOR = "audit.operator"
OPS_STATS = "ops.stats"
OPS_ALERTS = "ops.alerts"
OCPI_LOCATIONS = "state.ocpi_locations"


def _check_feed(feed: str, known: tuple[str, ...] = FEEDS) -> str:
    if feed not in known:
        raise ValueError(f"unknown feed {feed!r}; known feeds: {', '.join(known)}")
    return feed


def _check_tier(tier: str, known: tuple[str, ...] = TIERS) -> str:
    if tier not in known:
        raise ValueError(f"unknown tier {tier!r}; known tiers: {', '.join(known)}")
    return tier


def raw_topic(feed: str) -> str:
    """Validated canonical records from the adapters."""
    return f"raw.{_check_feed(feed)}"


def dlq_topic(feed: str) -> str:
    """Input that could not be parsed, validated or placed, with the original bytes and the reason."""
    return f"dlq.{_check_feed(feed)}"


def tier_topic(tier: str, feed: str) -> str:
    """Records as a tier may see them, after the policy engine (source and aggregate feeds)."""
    return f"tier.{_check_tier(tier)}.{_check_feed(feed, PIPELINE_FEEDS)}"


def pending_topic(tier: str, feed: str) -> str:
    """A delayed tier's records waiting for their release time."""
    if tier not in DELAYABLE_TIERS:
        raise ValueError(f"tier {tier!r} is never delayed; delayable tiers: {', '.join(DELAYABLE_TIERS)}")
    return f"pending.{tier}.{_check_feed(feed, PIPELINE_FEEDS)}"


def topic_configs(prefix: str = "") -> dict[str, dict[str, str]]:
    """Topic settings that differ from the broker's defaults, by (prefixed) topic name."""
    return {
        prefix + AUDIT_ACCESS: AUDIT_TOPIC_CONFIG,
        prefix + AUDIT_CHECKPOINTS: AUDIT_TOPIC_CONFIG,
        prefix + AUDIT_OPERATOR: AUDIT_TOPIC_CONFIG,
    }


def all_topics() -> list[str]:
    """Every topic of the whole service (``shfeeds topics create`` and ``shfeeds stack up`` create them)."""
    names = [AUDIT_ACCESS, AUDIT_CHECKPOINTS, AUDIT_OPERATOR]
    for feed in FEEDS:
        names += [raw_topic(feed), dlq_topic(feed)]
    for feed in PIPELINE_FEEDS:
        names += [tier_topic(tier, feed) for tier in TIERS]
        names += [pending_topic(tier, feed) for tier in DELAYABLE_TIERS]
    return names
