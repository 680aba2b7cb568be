"""Runtime settings, read from environment variables (all prefixed ``SHFEEDS_``).

One place for ports and paths so the stack, the tests and every component agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    ws_port: int = field(default_factory=lambda: int(_env("WS_PORT", "18765")))
    topic_partitions: int = field(default_factory=lambda: int(_env("TOPIC_PARTITIONS", "4")))
    kafka_bootstrap_override: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP", ""))
    redis_url_override: str = field(default_factory=lambda: _env("REDIS_URL", ""))
    simulator_url_override: str = field(default_factory=lambda: _env("SIMULATOR_URL", ""))
    # OCPI credentials: the token we present when pulling from a charge point operator (and that the
    # simulator then asks for), and the token an operator must present when pushing to us. Empty: none.
    ocpi_token: str = field(default_factory=lambda: _env("OCPI_TOKEN", ""), repr=False)
    ocpi_push_token: str = field(default_factory=lambda: _env("OCPI_PUSH_TOKEN", ""), repr=False)

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_override or f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return self.redis_url_override or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def simulator_url(self) -> str:
        return self.simulator_url_override or f"http://127.0.0.1:{self.simulator_port}"


def load() -> Settings:
    return Settings()
