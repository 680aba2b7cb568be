"""Catalogue entries, built from plain data (sans-I/O): the tier policy, the descriptive metadata, each
feed's update interval and the control plane's health report (``/health/feeds``), when there is one.

The fields a tier releases are the properties of that tier's published record schema
(``streams/policy/record_schema.py``), which is itself derived from the policy file: the catalogue keeps no
list of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.topics import TIERS
from streams.policy import Policy
from streams.policy.record_schema import tier_record_schema

from .metadata import CatalogMetadata, FeedMetadata, MetadataError, Terms

OPEN_TIERS: tuple[str, ...] = ("public", "registered", "licensed")  # the operator tier is never opened
GTFS_RT_FEEDS = frozenset({"bus", "metro"})
# The health figures a catalogue entry shows, as the control plane names them (docs/control-plane.md).
QUALITY_FIGURES = (
    "records_per_s",
    "staleness_s",
    "completeness",
    "reject_ratio",
    "duplicate_ratio",
    "event_lag_p99_ms",
)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str  # a short description of the JSON type, from the schema
    required: bool
    description: str


@dataclass(frozen=True)
class TierRelease:
    """What one tier receives of one feed."""

    tier: str
    terms: Terms
    fields: tuple[FieldInfo, ...]
    withheld: tuple[str, ...]  # fields a tier above gets that this one does not
    delay_s: float
    min_interval_s: float
    latency_target_s: float | None
    crs: tuple[str, ...]
    note: str

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


@dataclass(frozen=True)
class Quality:
    state: str  # ok, degraded, stale, down, or unknown when there is no report
    reasons: tuple[str, ...]
    figures: Mapping[str, Any]
    generated_at: int | None
    derived: bool = False  # an aggregate's quality is that of its source feeds


@dataclass(frozen=True)
class FeedEntry:
    feed: str
    meta: FeedMetadata
    publisher_zh: str
    publisher_en: str
    grade_zh: str
    grade_en: str
    update_interval_s: float
    releases: tuple[TierRelease, ...]
    quality: Quality

    @property
    def is_aggregate(self) -> bool:
        return bool(self.meta.derived_from)

    @property
    def gtfs_rt(self) -> bool:
        return self.feed in GTFS_RT_FEEDS

    def release(self, tier: str) -> TierRelease:
        return next(r for r in self.releases if r.tier == tier)


@dataclass(frozen=True)
class Catalogue:
    policy_version: str
    entries: tuple[FeedEntry, ...]
    generated_at: int

    def entry(self, feed: str) -> FeedEntry:
        return next(e for e in self.entries if e.feed == feed)


def _type_text(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_text(o) for o in schema["anyOf"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}))}"
    return kind


def _fields(schema: Mapping[str, Any]) -> tuple[FieldInfo, ...]:
    required = set(schema["required"])
    return tuple(
        FieldInfo(name, _type_text(prop), name in required, str(prop.get("description", "")))
        for name, prop in schema["properties"].items()
    )


_STATE_ORDER = ("ok", "degraded", "stale", "down", "unknown")


def _quality(feed: str, derived_from: tuple[str, ...], health: Mapping[str, Any] | None) -> Quality:
    if health is None:
        return Quality("unknown", ("the control plane's health report is not available",), {}, None)
    generated = health.get("generated_at")
    by_feed = {str(f.get("feed")): f for f in health.get("feeds", []) if isinstance(f, Mapping)}
    if derived_from:
        states = [str(by_feed[s].get("state", "unknown")) if s in by_feed else "unknown" for s in derived_from]
        worst = max(states, key=lambda s: _STATE_ORDER.index(s) if s in _STATE_ORDER else len(_STATE_ORDER))
        reasons = tuple(r for s in derived_from if s in by_feed for r in by_feed[s].get("reasons", []))
        return Quality(worst, reasons, {}, generated, derived=True)
    report = by_feed.get(feed)
    if report is None:
        return Quality("unknown", (f"the health report has no figures for {feed}",), {}, generated)
    figures = report.get("figures") or {}
    return Quality(
        str(report.get("state", "unknown")),
        tuple(str(r) for r in report.get("reasons", [])),
        {k: figures.get(k) for k in QUALITY_FIGURES},
        generated,
    )


def build_catalogue(
    policy: Policy,
    meta: CatalogMetadata,
    update_intervals_s: Mapping[str, float],
    health: Mapping[str, Any] | None,
    now_ms: int,
) -> Catalogue:
    """One entry per feed of the policy, in the policy's order.

    ``update_intervals_s``: how often each source feed's upstream publishes (the control plane's thresholds)
    and how often the aggregates are recomputed; ``health``: the ``/health/feeds`` report, or None."""
    missing = [f for f in policy.feeds if f not in meta.feeds]
    extra = [f for f in meta.feeds if f not in policy.feeds]
    if missing or extra:
        raise MetadataError(f"catalogue metadata and policy disagree: missing {missing}, unknown {extra}")
    no_terms = [t for t in OPEN_TIERS if t not in meta.terms]
    if no_terms:
        raise MetadataError(f"catalogue metadata has no terms for tier(s) {no_terms}")
    entries = []
    for feed, fp in policy.feeds.items():
        fm = meta.feeds[feed]
        operator_fields = set(tier_record_schema(policy, feed, TIERS[0])["properties"])
        above = operator_fields  # "withheld" compares each tier with the one above it, most precise first
        by_tier: dict[str, TierRelease] = {}
        for tier in (t for t in TIERS if t in OPEN_TIERS):
            schema = tier_record_schema(policy, feed, tier)
            rule = fp.tiers[tier]
            fields = _fields(schema)
            names = {f.name for f in fields}
            by_tier[tier] = TierRelease(
                tier=tier,
                terms=meta.terms[tier],
                fields=fields,
                withheld=tuple(sorted(above - names)),
                delay_s=rule.delay_ms / 1000,
                min_interval_s=rule.min_interval_ms / 1000,
                latency_target_s=rule.latency_target_ms / 1000 if rule.latency_target_ms is not None else None,
                crs=tuple(rule.crs),
                note=rule.note,
            )
            above = names
        releases = [by_tier[t] for t in OPEN_TIERS]
        interval = update_intervals_s.get(feed)
        if interval is None:
            raise MetadataError(f"no update interval for feed {feed}")
        entries.append(
            FeedEntry(
                feed=feed,
                meta=fm,
                publisher_zh=meta.publishers[fm.publisher].zh,
                publisher_en=meta.publishers[fm.publisher].en,
                grade_zh=meta.grades[fm.grade].zh,
                grade_en=meta.grades[fm.grade].en,
                update_interval_s=float(interval),
                releases=tuple(releases),
                quality=_quality(feed, fm.derived_from, health),
            )
        )
    return Catalogue(policy.version, tuple(entries), now_ms)
