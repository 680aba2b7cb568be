"""The health report as Prometheus metrics (``GET /metrics`` on the control plane): one gauge per figure,
the feed and the state as labels."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .health import STATES

PREFIX = "shfeeds_feed"

# (figure in the report, metric name without prefix, help, scale to base units)
_FIGURES = (
    ("records_per_s", "records_per_second", "Records per second from the feed's sources over the window", 1.0),
    ("staleness_s", "staleness_seconds", "Seconds since the feed last delivered data", 1.0),
    ("reject_ratio", "reject_ratio", "Rejected share of what the sources delivered over the window", 1.0),
    ("duplicate_ratio", "duplicate_ratio", "Duplicated share of what the sources delivered over the window", 1.0),
    ("completeness", "completeness_ratio", "Entities reporting over the known fleet", 1.0),
    ("event_lag_p50_ms", "event_lag_p50_seconds", "Event time to clean stage, median over the window", 0.001),
    ("event_lag_p99_ms", "event_lag_p99_seconds", "Event time to clean stage, 99th percentile over the window", 0.001),
    ("ingest_lag_p50_ms", "ingest_lag_p50_seconds", "Ingest to tier topics, median over the window", 0.001),
    ("ingest_lag_p99_ms", "ingest_lag_p99_seconds", "Ingest to tier topics, 99th percentile over the window", 0.001),
    ("consumer_lag_max", "consumer_lag_records", "Largest per-partition lag of the clean stage", 1.0),
)


class ReportCollector(Collector):
    def __init__(self, report: Callable[[], Mapping[str, Any]], extra: Callable[[], Mapping[str, float]]) -> None:
        self.report = report
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        body = self.report()
        state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the feed's current state", labels=["feed", "state"])
        for f in body["feeds"]:
            for s in STATES:
                state.add_metric([f["feed"], s], 1.0 if f["state"] == s else 0.0)
        yield state
        for key, name, help_text, scale in _FIGURES:
            family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["feed"])
            for f in body["feeds"]:
                value = f["figures"].get(key)
                if value is not None:
                    family.add_metric([f["feed"]], float(value) * scale)
            yield family
        extra = self.extra()
        yield GaugeMetricFamily("shfeeds_alerts_open", "Open feed alerts", value=extra.get("alerts_open", 0))
        yield CounterMetricFamily(
            "shfeeds_alert_webhook_failures", "Alert events the webhook never accepted",
            value=extra.get("webhook_failures", 0),
        )  # fmt: skip


def render(report: Callable[[], Mapping[str, Any]], extra: Callable[[], Mapping[str, float]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report, extra))
    return generate_latest(registry)
