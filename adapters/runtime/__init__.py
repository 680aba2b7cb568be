"""The ingest runtime shared by all adapters: poll or receive, parse, skip unchanged, produce to Kafka.

``run_adapter(name, settings)`` runs one configured source forever; ``run_all(names, settings)`` several,
sharing one Kafka producer. Per-source figures are in ``AdapterRuntime.stats`` (plain objects) and, with
``metrics_port``, served as Prometheus metrics on ``/metrics``. The runtime itself is in ``runtime.py``; this
package only names what callers use.
"""

from .kafka_sink import KafkaSink, SinkStats
from .metrics import MetricsServer
from .runtime import (
    DEFAULT_PUSH_PORT,
    AdapterRuntime,
    adapter_topics,
    ensure_adapter_topics,
    run_adapter,
    run_all,
)
from .sources import PUSH_SOURCES, SOURCES, SourceConfig
from .stats import SourceStats

__all__ = [
    "DEFAULT_PUSH_PORT",
    "PUSH_SOURCES",
    "SOURCES",
    "AdapterRuntime",
    "KafkaSink",
    "MetricsServer",
    "SinkStats",
    "SourceConfig",
    "SourceStats",
    "adapter_topics",
    "ensure_adapter_topics",
    "run_adapter",
    "run_all",
]
