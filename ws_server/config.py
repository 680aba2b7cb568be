"""Server options beyond the shared ``settings``. The names of the topics and Redis keys the server reads
and writes come from its ``Naming`` (``schemas/naming.py``), the namespace that lets tests and benchmarks
run beside the live service on the same Kafka and Redis."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from schemas import Naming

__all__ = ["Naming", "ServerConfig", "hash_api_key"]


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback unless configured (SHFEEDS_BIND_HOST, shfeeds serve --host)
    port: int = 18765
    kafka_bootstrap: str = "127.0.0.1:19092"
    redis_url: str = "redis://127.0.0.1:16379/0"
    naming: Naming = field(default_factory=Naming)
    # How often pending changes become frames, and how far apart one stream's frames are at least. A change
    # to a quiet stream (a street viewport: about a frame a second) goes out at the next 20 ms tick; a busy
    # one (a district, the whole feed) still gets at most 20 frames a second, as with the 50 ms tick this
    # replaced. The tick table of docs/benchmarks-fanout.md: at 5,000 one-viewport clients p99 101 -> 75 ms
    # for ~4 % more CPU per delivery, the same CPU with the mixed filters. A client that wants fewer frames
    # asks for `min_interval_ms`.
    tick_ms: int = 20
    frame_gap_ms: int = 50
    backlog: int = 8192  # listen backlog: reconnect storms of thousands must not stall
    reuse_port: bool = False  # SO_REUSEPORT: several processes share the port
    # Largest client message: a polygon of the most vertices allowed (5,000) fits in JSON with every
    # coordinate at full double precision (about 40 bytes a vertex).
    max_frame_bytes: int = 256 * 1024
    log_lines_per_minute: int = 20  # per connection; beyond it lines are counted and summarised once
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    key_check_interval_s: float = 2.0  # revocation / downgrade reach open connections within 2×this
    audit_interval_s: float = 1.0  # licensed deliveries are logged per batch of this length
    tls_cert: Path | None = None
    tls_key: Path | None = None
    node_id: str | None = None
    idle_stream_grace_ms: int = 10_000  # a stream outlives its last member this long (exact replay on resume)
    replay_frames: int = 2048  # per stream (and at most 16 MiB per stream)
    replay_bytes_total: int = 256 << 20  # every stream's replay buffer together
    history_records: int = 100_000  # per (tier, feed): how far back a resume from another node can reach
    per_ip_connections: int | None = None  # overrides the public tier's per-IP cap
    # Freeze surviving objects this often (0 = leave the collector alone); why every second: the GC item of
    # docs/benchmarks-fanout.md.
    gc_freeze_s: float = 1.0
    gc_full_s: float = 600.0  # ... and collect everything this often
    heap_trim_s: float = 10.0  # give freed heap memory back to the system this often (0 = never)
    # The simulated network /gtfs/static.zip describes: the simulator's seed and fleet size (`shfeeds run`'s).
    network_seed: int = 2019
    network_buses: int = 17_000
    ops_stats_every_s: float = 0.0  # connections per tier to the control plane (ops.stats); 0 = off
    archive_dir: Path | None = None  # the tier archive replays read beyond Kafka retention (None: Kafka only)
    audit_key: str | None = None  # signs the audit checkpoints (None: SHFEEDS_AUDIT_KEY or the installation's)
    usage_flush_interval_s: float = 2.0  # usage counts reach Redis, and daily quotas are checked, this often
    agreement_policy: Path | None = None  # the agreement rules' defaults (None: agreements/policy.toml)
    control_plane_url: str | None = None  # the catalogue's live quality figures (None: shown as unknown)
