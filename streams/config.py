"""Settings of the stream workers, derived from the project settings plus a few stream-only knobs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from schemas import DEFAULT_REDIS_PREFIX, FEEDS, TIERS, Naming
from settings import Settings

# Which coordinate system each tier topic carries: GCJ-02, what Chinese map SDKs expect and the first
# (default) entry of every tier in the policy file. Tiers the policy allows WGS-84 may be switched.
DEFAULT_TIER_CRS: dict[str, str] = {tier: "gcj02" for tier in TIERS}


def _parse_tier_crs(text: str) -> dict[str, str]:
    out = dict(DEFAULT_TIER_CRS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        tier, _, crs = part.partition("=")
        if tier not in TIERS or crs not in ("wgs84", "gcj02"):
            raise ValueError(f"bad SHFEEDS_TIER_CRS entry {part!r}: want <tier>=wgs84|gcj02")
        out[tier] = crs
    return out


@dataclass(frozen=True)
class StreamConfig:
    bootstrap: str
    redis_url: str
    partitions: int = 4
    app_id: str = "shfeeds-streams"  # consumer groups are "<app_id>-<stage>"
    # Prefix for every topic name; empty in production. Tests use a unique one to isolate whole pipelines.
    topic_prefix: str = ""
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    feeds: tuple[str, ...] = FEEDS
    tier_crs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TIER_CRS))
    max_poll_records: int = 2000
    producer_linger_ms: int = 10
    poll_timeout_ms: int = 100
    redis_timeout_s: float = 5.0
    stale_scan_interval_s: float = 1.0
    aggregate_interval_s: float = 5.0
    metrics_port: int | None = None  # Prometheus /metrics; None = not served
    aggregate_publisher: bool = True  # False: the control plane publishes the aggregates (a Faust timer)
    ops_stats: bool = True  # one stats record per batch and stage to ops.stats, for the control plane
    policy_path: str | None = None
    naming: Naming = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "naming", Naming(self.topic_prefix, self.redis_prefix))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> StreamConfig:
        env = os.environ
        values: dict[str, object] = {
            "bootstrap": settings.kafka_bootstrap,
            "redis_url": settings.redis_url,
            "partitions": settings.topic_partitions,
            "app_id": env.get("SHFEEDS_STREAMS_APP_ID", "shfeeds-streams"),
            "tier_crs": _parse_tier_crs(env.get("SHFEEDS_TIER_CRS", "")),
            "max_poll_records": int(env.get("SHFEEDS_STREAMS_MAX_POLL_RECORDS", "2000")),
            "policy_path": env.get("SHFEEDS_POLICY_PATH") or None,
        }
        port = env.get("SHFEEDS_STREAMS_METRICS_PORT", "")
        if port:
            values["metrics_port"] = int(port)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def topic(self, name: str) -> str:
        return self.naming.topic(name)

    def group(self, stage: str) -> str:
        return f"{self.app_id}-{stage}"
