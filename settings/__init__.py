"""Runtime settings, read from environment variables (all prefixed ``SHFEEDS_``).

One place for ports and paths so the stack, the tests and every component agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# In the stack folder: how many Kafka brokers `shfeeds stack up` runs there, so every later command agrees.
BROKERS_FILE = "kafka-brokers"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SHFEEDS_{name}", default)


@dataclass(frozen=True)
class Settings:
    stack_dir: Path = field(default_factory=lambda: Path(_env("STACK_DIR", str(PROJECT_ROOT / ".stack"))))
    # Downloaded Kafka jars: shared by every stack folder so a second stack (e.g. in a test) fetches nothing.
    cache_dir: Path = field(default_factory=lambda: Path(_env("CACHE_DIR", str(PROJECT_ROOT / ".stack" / "cache"))))
    kafka_port: int = field(default_factory=lambda: int(_env("KAFKA_PORT", "19092")))
    kafka_controller_port: int = field(default_factory=lambda: int(_env("KAFKA_CONTROLLER_PORT", "19093")))
    kafka_heap: str = field(default_factory=lambda: _env("KAFKA_HEAP", "768m"))
    redis_port: int = field(default_factory=lambda: int(_env("REDIS_PORT", "16379")))
    simulator_port: int = field(default_factory=lambda: int(_env("SIMULATOR_PORT", "18080")))
    # The address the WebSocket server, the OCPI push receiver and the adapters' metrics listen on:
    # loopback unless configured (compose names a container's own address where others must reach it).
    bind_host: str = field(default_factory=lambda: _env("BIND_HOST", "127.0.0.1"))
    ws_port: int = field(default_factory=lambda: int(_env("WS_PORT", "18765")))
    control_plane_port: int = field(default_factory=lambda: int(_env("CONTROL_PLANE_PORT", "18770")))
    topic_partitions: int = field(default_factory=lambda: int(_env("TOPIC_PARTITIONS", "4")))
    # Brokers of the local Kafka cluster. 0: as many as `shfeeds stack up --brokers N` last brought up in
    # this stack folder (1 for a new one). Broker i listens on kafka_port + 2i, its controller on
    # kafka_controller_port + 2i.
    kafka_brokers: int = field(default_factory=lambda: int(_env("KAFKA_BROKERS", "0")))
    # How long the local stack's Kafka keeps records, by their timestamp (observed_at). -1: by size only
    # (1 GiB a partition): tests and simulations write fixed past days, which an age limit would delete in
    # the middle of a run whenever its five-minute retention check came round. A deployment sets an age.
    kafka_retention_hours: int = field(default_factory=lambda: int(_env("KAFKA_RETENTION_HOURS", "-1")))
    kafka_bootstrap_override: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP", ""))
    redis_url_override: str = field(default_factory=lambda: _env("REDIS_URL", ""))
    simulator_url_override: str = field(default_factory=lambda: _env("SIMULATOR_URL", ""))
    # OCPI credentials: the token we present when pulling from a charge point operator (and that the
    # simulator then asks for), and the token an operator must present when pushing to us. Empty: none.
    ocpi_token: str = field(default_factory=lambda: _env("OCPI_TOKEN", ""), repr=False)
    ocpi_push_token: str = field(default_factory=lambda: _env("OCPI_PUSH_TOKEN", ""), repr=False)

    @property
    def broker_count(self) -> int:
        if self.kafka_brokers > 0:
            return self.kafka_brokers
        try:
            return max(1, int((self.stack_dir / BROKERS_FILE).read_text()))
        except (OSError, ValueError):
            return 1

    @property
    def broker_ports(self) -> list[int]:
        return [self.kafka_port + 2 * i for i in range(self.broker_count)]

    @property
    def replication_factor(self) -> int:
        """Copies of every topic: three where the cluster has them, as a real deployment runs."""
        return min(3, self.broker_count)

    @property
    def min_insync_replicas(self) -> int:
        """Acknowledged writes survive the loss of any one broker once there are three copies."""
        return 2 if self.replication_factor >= 3 else 1

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_override or ",".join(f"127.0.0.1:{port}" for port in self.broker_ports)

    @property
    def redis_url(self) -> str:
        """With this process' Redis user and password (``access/identity.py``): Redis refuses anonymous use."""
        from access.identity import with_redis_credentials  # here: access builds on this module

        return with_redis_credentials(self.redis_url_override or f"redis://127.0.0.1:{self.redis_port}/0", self)

    @property
    def simulator_url(self) -> str:
        return self.simulator_url_override or f"http://127.0.0.1:{self.simulator_port}"


def load() -> Settings:
    return Settings()
