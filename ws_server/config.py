"""Server options (beyond the shared ``settings``) and the names of the topics and Redis keys it reads.

A namespace lets tests and benchmarks run beside the live service on the same Kafka and Redis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from schemas import AUDIT_ACCESS, tier_topic


@dataclass(frozen=True)
class Naming:
    topic_prefix: str = ""  # prepended to every Kafka topic name (tests use a unique one)
    redis_prefix: str = "shfeeds"

    def tier_topic(self, tier: str, feed: str) -> str:
        return self.topic_prefix + tier_topic(tier, feed)

    def audit_topic(self) -> str:
        return self.topic_prefix + AUDIT_ACCESS

    def state_key(self, tier: str, feed: str) -> str:
        return f"{self.redis_prefix}:state:{tier}:{feed}"

    def offsets_key(self, tier: str, feed: str) -> str:
        return f"{self.redis_prefix}:state:{tier}:{feed}:offsets"

    def key_key(self, key_hash: str) -> str:
        return f"{self.redis_prefix}:key:{key_hash}"

    def key_pattern(self) -> str:
        return f"{self.redis_prefix}:key:*"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 18765
    kafka_bootstrap: str = "127.0.0.1:19092"
    redis_url: str = "redis://127.0.0.1:16379/0"
    naming: Naming = field(default_factory=Naming)
    tick_ms: int = 50  # how often pending changes become frames
    backlog: int = 8192  # listen backlog: reconnect storms of thousands must not stall
    reuse_port: bool = False  # SO_REUSEPORT: several processes share the port
    max_frame_bytes: int = 64 * 1024  # largest client message
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    key_check_interval_s: float = 2.0  # revocation / downgrade reach open connections within 2×this
    audit_interval_s: float = 1.0  # licensed deliveries are logged per batch of this length
    tls_cert: Path | None = None
    tls_key: Path | None = None
    node_id: str | None = None
    resume_window_ms: int = 300_000
    replay_frames: int = 2048
    history_records: int = 100_000  # per (tier, feed): how far back a resume from another node can reach
    per_ip_connections: int | None = None  # overrides the public tier's per-IP cap
    gc_freeze_s: float = 10.0  # freeze surviving objects this often (0 = leave the collector alone)
    gc_full_s: float = 600.0  # ... and collect everything this often
    archive_dir: Path | None = None  # the tier archive replays read beyond Kafka retention (None: Kafka only)
