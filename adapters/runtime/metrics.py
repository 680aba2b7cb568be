"""Per-source figures as Prometheus metrics, read from the runtime's plain stats at scrape time.

No second set of counters to keep in step: a collector turns ``SourceStats`` and ``SinkStats`` into
metric families whenever ``/metrics`` is scraped. Served by aiohttp on the runtime's own event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .kafka_sink import SinkStats
from .stats import SourceStats

PREFIX = "shfeeds_adapter"

# (attribute of SourceStats, metric name without prefix and _total, help)
_SOURCE_COUNTERS = (
    ("polls", "polls", "Polls (or pushes received) of the source"),
    ("not_modified", "not_modified", "Polls answered 304 or with the same bytes as before"),
    ("records", "records", "Records sent to raw.<feed>"),
    ("rejects", "rejects", "Bad items sent to dlq.<feed> with the original bytes and the reason"),
    ("skipped", "skipped", "Records not sent because the entity's content had not changed"),
    ("errors", "errors", "Failed polls: network errors, timeouts, HTTP error statuses"),
)


class RuntimeCollector(Collector):
    def __init__(self, sources: Callable[[], Mapping[str, SourceStats]], sink: Callable[[], SinkStats | None]) -> None:
        self._sources = sources
        self._sink = sink

    def collect(self) -> Iterator[Metric]:
        sources = dict(self._sources())
        for attribute, name, help_text in _SOURCE_COUNTERS:
            counter = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=["source"])
            for source, stats in sources.items():
                counter.add_metric([source], getattr(stats, attribute))
            yield counter
        last = GaugeMetricFamily(
            f"{PREFIX}_last_success_timestamp_seconds",
            "Unix time of the last successful poll (absent before the first one)",
            labels=["source"],
        )
        duration = GaugeMetricFamily(
            f"{PREFIX}_last_poll_duration_seconds",
            "Fetch + parse + hand-over time of the last successful poll",
            labels=["source"],
        )
        for source, stats in sources.items():
            if stats.last_success_ms is not None:
                last.add_metric([source], stats.last_success_ms / 1000)
            if stats.last_poll_s is not None:
                duration.add_metric([source], stats.last_poll_s)
        yield last
        yield duration
        sink = self._sink()
        if sink is None:
            return
        yield GaugeMetricFamily(
            f"{PREFIX}_producer_buffered_messages",
            "Messages accepted by the producer buffer and not yet acknowledged by Kafka",
            value=sink.buffered,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_producer_in_flight_messages",
            "Messages handed to Kafka, awaiting acknowledgement",
            value=sink.in_flight,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_producer_buffer_limit_messages",
            "Producer buffer size at which polls wait",
            value=sink.buffer_limit,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_kafka_connected", "1 while the last Kafka exchange succeeded", value=int(sink.connected)
        )
        yield CounterMetricFamily(f"{PREFIX}_delivered", "Messages acknowledged by Kafka", value=sink.delivered)
        yield CounterMetricFamily(
            f"{PREFIX}_send_failures", "Kafka send attempts that failed and were retried", value=sink.send_failures
        )
        yield CounterMetricFamily(
            f"{PREFIX}_undeliverable", "Messages Kafka refused for good (e.g. too large)", value=sink.undeliverable
        )
        if sink.last_delivery_ms is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_delivery_timestamp_seconds",
                "Unix time of the last Kafka acknowledgement",
                value=sink.last_delivery_ms / 1000,
            )


class MetricsServer:
    """``GET /metrics`` in the Prometheus text format, on its own port."""

    def __init__(self, collector: Collector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
