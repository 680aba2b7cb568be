"""The ingest runtime shared by all adapters: poll or receive, parse, skip unchanged, produce to Kafka.

``run_adapter(name, settings)`` runs one configured source forever; ``run_all(names, settings)`` several,
sharing one Kafka producer. Per-source figures are in ``AdapterRuntime.stats`` (plain objects) and, with
``metrics_port``, served as Prometheus metrics on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from control_plane.emitter import StatsEmitter
from control_plane.source_stats import SourceReporter
from schemas import raw_topic
from settings import Settings
from streams.topics_admin import ensure_topics, service_topics

from .kafka_sink import STOP_TIMEOUT_S, KafkaSink, SinkStats
from .metrics import MetricsServer, RuntimeCollector
from .polling_adapter import PollingAdapter
from .push import PushReceiver
from .resume import newest_ingested
from .shutdown import cancel_within, stop_within
from .sources import PUSH_SOURCES, SOURCES, SourceConfig, get_source
from .stats import SourceStats

log = logging.getLogger(__name__)

DEFAULT_PUSH_PORT = 18090


async def ensure_service_topics(settings: Settings, topic_prefix: str = "") -> None:
    """Create the service's topics (under ``topic_prefix``) up front, as the stack does."""
    names = [topic_prefix + name for name in service_topics()] if topic_prefix else None
    await ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, names)


class AdapterRuntime:
    def __init__(
        self, settings: Settings, *, sink: KafkaSink | None = None, topic_prefix: str = "", ops_stats: bool = True
    ) -> None:
        self.settings = settings
        self.sink = sink or KafkaSink(settings.kafka_bootstrap, topic_prefix=topic_prefix)
        self.stats: dict[str, SourceStats] = {}
        self.metrics: MetricsServer | None = None
        self.push_receivers: list[PushReceiver] = []
        self.ops_stats = ops_stats
        self.ops_stats_every_s = 2.0

    def figures(self) -> dict[str, Any]:
        """Everything the health work needs, as plain values."""
        return {
            "sources": {name: s.as_dict() for name, s in self.stats.items()},
            "kafka": self.sink.stats.as_dict(),
        }

    async def _report_stats(self, names: list[str], intervals: dict[str, float]) -> None:
        """Per-source figures to ops.stats every few seconds, for the control plane's health checks."""
        feeds = {n: SOURCES[n].feed for n in names if n in SOURCES}
        every = {n: intervals.get(n, SOURCES[n].interval_s) for n in feeds}
        emitter = StatsEmitter(self.sink.bootstrap, self.sink.topic_prefix)
        await emitter.start()
        try:
            await SourceReporter(emitter, feeds, every).run(lambda: self.stats, self.ops_stats_every_s)
        finally:
            await emitter.stop()

    async def _create_topics(self) -> None:
        try:
            await ensure_service_topics(self.settings, self.sink.topic_prefix)
        except Exception as err:  # Kafka may be down; the sink keeps retrying and says so
            log.error("could not create topics: %s", err)

    async def run(
        self,
        names: Iterable[str],
        *,
        urls: dict[str, str] | None = None,
        push_port: int = DEFAULT_PUSH_PORT,
        create_topics: bool = True,
        intervals: dict[str, float] | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
    ) -> None:
        """Run until cancelled. ``urls`` and ``intervals`` override a source's configured URL and poll
        interval; ``metrics_port`` (0: any free port, see ``self.metrics.port``) serves ``/metrics``."""
        names = list(names)
        for name in names:
            if name not in PUSH_SOURCES:
                get_source(name)  # unknown names fail before anything starts
        for name in names:
            self.stats.setdefault(name, SourceStats(source=name))
        intervals = intervals or {}
        urls = urls or {}
        tasks: list[asyncio.Task[None]] = []
        try:
            if metrics_port is not None:
                self.metrics = MetricsServer(RuntimeCollector(lambda: self.stats, lambda: self.sink.stats))
                await self.metrics.start(metrics_host, metrics_port)
            if create_topics:
                # Beside polling, not before it: while Kafka is away, records wait in the sink.
                tasks.append(asyncio.create_task(self._create_topics(), name="create-topics"))
            await self.sink.start()
            if self.ops_stats:
                tasks.append(asyncio.create_task(self._report_stats(names, intervals), name="ops-stats"))
            async with aiohttp.ClientSession() as session:
                pollers: list[asyncio.Task[None]] = []
                for name in names:
                    stats = self.stats[name]
                    if name in PUSH_SOURCES:
                        receiver = PushReceiver(
                            name=name, sink=self.sink, stats=stats, token=self.settings.ocpi_push_token
                        )
                        self.push_receivers.append(receiver)
                        await receiver.start("0.0.0.0", push_port)
                        continue
                    config: SourceConfig = SOURCES[name]
                    adapter = PollingAdapter(
                        name=name,
                        format_name=config.format,
                        url=urls.get(name) or config.resolved_url(self.settings),
                        interval_s=intervals.get(name, config.interval_s),
                        timeout_s=config.timeout_s,
                        session=session,
                        sink=self.sink,
                        options=dict(config.options),
                        stats=stats,
                        headers=config.request_headers(self.settings),
                        resume=functools.partial(
                            newest_ingested, self.sink.bootstrap, self.sink.topic_prefix + raw_topic(config.feed), name
                        ),
                    )
                    pollers.append(asyncio.create_task(adapter.run_forever(), name=f"adapter-{name}"))
                tasks += pollers
                if pollers:
                    await asyncio.gather(*pollers)
                else:
                    await asyncio.Event().wait()  # push-only: serve until cancelled
        finally:
            # Every step is bounded, so a runtime cancelled while Kafka is unreachable still ends on time.
            await cancel_within(tasks, STOP_TIMEOUT_S, "adapter tasks")
            for receiver in self.push_receivers:
                await stop_within(receiver.stop(), STOP_TIMEOUT_S, f"push receiver {receiver.name}")
            await self.sink.close()
            if self.metrics is not None:
                await stop_within(self.metrics.stop(), STOP_TIMEOUT_S, "metrics server")


async def run_adapter(name: str, settings: Settings, *, url: str | None = None, **kwargs: Any) -> None:
    """Run one named source forever."""
    await AdapterRuntime(settings).run([name], urls={name: url} if url else None, **kwargs)


async def run_all(names: Iterable[str], settings: Settings, **kwargs: Any) -> None:
    """Run several named sources forever, sharing one Kafka producer."""
    await AdapterRuntime(settings).run(names, **kwargs)


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
    "run_adapter",
    "run_all",
]
