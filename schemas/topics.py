"""Every Kafka topic name the service uses, in one place."""

from __future__ import annotations

from .records import FEEDS

TIERS: tuple[str, ...] = ("operator", "licensed", "registered", "public")  # most precise first

AUDIT_ACCESS = "audit.access"


def _check_feed(feed: str) -> str:
    if feed not in FEEDS:
        raise ValueError(f"unknown feed {feed!r}; known feeds: {', '.join(FEEDS)}")
    return feed


def raw_topic(feed: str) -> str:
    """Validated canonical records from the adapters."""
    return f"raw.{_check_feed(feed)}"


def dlq_topic(feed: str) -> str:
    """Upstream input that could not be parsed or validated, with original bytes and the reason."""
    return f"dlq.{_check_feed(feed)}"


def tier_topic(tier: str, feed: str) -> str:
    """Records as a tier may see them, after the policy engine."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}")
    return f"tier.{tier}.{_check_feed(feed)}"


def all_topics() -> list[str]:
    names = [AUDIT_ACCESS]
    for feed in FEEDS:
        names += [raw_topic(feed), dlq_topic(feed)]
        names += [tier_topic(tier, feed) for tier in TIERS]
    return names
