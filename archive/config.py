"""Archiver settings, from the environment (``SHFEEDS_ARCHIVE_*``) with defaults that suit one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import settings as settings_mod
from schemas import CLIENT_FEEDS, TIERS, Naming


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SHFEEDS_{name}", default)


@dataclass(frozen=True)
class ArchiveConfig:
    root: Path
    bootstrap: str
    topic_prefix: str = ""
    group_id: str = "shfeeds-archiver"
    feeds: tuple[str, ...] = CLIENT_FEEDS  # every tier topic: the source feeds and the aggregates
    tiers: tuple[str, ...] = TIERS
    flush_records: int = 50_000  # write a file once this many records wait ...
    flush_interval_s: float = 60.0  # ... or once the oldest has waited this long
    retention_days: int = 365  # archive days older than this are deleted (0 = keep for ever)
    # Kafka retention of the tier topics (retention.ms), applied by the archiver at start; None = leave as is.
    kafka_retention_ms: int | None = None
    policy_path: str | None = field(default_factory=lambda: _env("POLICY_PATH", "") or None)

    def topic(self, tier: str, feed: str) -> str:
        return Naming(topic_prefix=self.topic_prefix).tier_topic(tier, feed)

    @classmethod
    def from_env(cls, settings: settings_mod.Settings | None = None, **overrides: object) -> ArchiveConfig:
        s = settings or settings_mod.load()
        retention_ms = _env("KAFKA_TIER_RETENTION_MS", "")
        values: dict[str, object] = {
            "root": Path(_env("ARCHIVE_DIR", str(s.stack_dir / "archive"))),
            "bootstrap": s.kafka_bootstrap,
            "flush_records": int(_env("ARCHIVE_FLUSH_RECORDS", "50000")),
            "flush_interval_s": float(_env("ARCHIVE_FLUSH_INTERVAL_S", "60")),
            "retention_days": int(_env("ARCHIVE_RETENTION_DAYS", "365")),
            "kafka_retention_ms": int(retention_ms) if retention_ms else None,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
