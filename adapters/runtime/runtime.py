"""The adapters' runtime: one process running configured sources (polled or pushed) into one Kafka producer.

``AdapterRuntime.run`` starts each source's poller or push receiver, the topic creation beside them and the
optional ``/metrics`` server, and on cancellation stops them all before closing the producer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from adapters.formats.ocpi_location_store import LocationStore
from control_plane.emitter import StatsEmitter
from control_plane.source_stats import SourceReporter
from kafka_admin import ensure_topics
from schemas import FEEDS, Naming
from settings import Settings
from settings.secret_store import OCPI_PUSH_TOKEN, resolve

from .kafka_sink import STOP_TIMEOUT_S, KafkaSink
from .location_log import LocationLog
from .location_sync import LocationSync
from .metrics import MetricsServer, RuntimeCollector
from .polling_adapter import PollingAdapter
from .push import PushReceiver
from .resume import newest_ingested
from .shutdown import cancel_within, stop_within
from .sources import PUSH_SOURCES, SOURCES, SourceConfig, get_source
from .stats import SourceStats

log = logging.getLogger(__name__)

DEFAULT_PUSH_PORT = 18090


def adapter_topics(naming: Naming) -> list[str]:
    """The topics adapters write: every feed's raw and dead-letter topic (a source's format decides which
    feeds its records belong to, record by record)."""
    return [name for feed in FEEDS for name in (naming.raw_topic(feed), naming.dlq_topic(feed))]


async def ensure_adapter_topics(settings: Settings, naming: Naming) -> None:
    """Create the topics adapters write, up front with the configured partition count; the rest of the
    service's topics are created by the components that write them (or all at once by ``shfeeds topics``)."""
    await ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, adapter_topics(naming))


class AdapterRuntime:
    def __init__(
        self, settings: Settings, *, sink: KafkaSink | None = None, topic_prefix: str = "", ops_stats: bool = True
    ) -> None:
        self.settings = settings
        self.sink = sink or KafkaSink(settings.kafka_bootstrap, topic_prefix=topic_prefix)
        self.stats: dict[str, SourceStats] = {}
        self.metrics: MetricsServer | None = None
        self.push_receivers: list[PushReceiver] = []
        self.location_syncs: list[LocationSync] = []
        # OCPI Locations known to this runtime's push receiver and full sync (rebuilt from Kafka on start).
        self.locations = LocationStore()
        self.ops_stats = ops_stats
        self.ops_stats_every_s = 2.0

    async def _report_stats(self, names: list[str], intervals: dict[str, float]) -> None:
        """Per-source figures to ops.stats every few seconds, for the control plane's health checks."""
        feeds = {n: SOURCES[n].feed for n in names if n in SOURCES}
        every = {n: intervals.get(n, SOURCES[n].interval_s) for n in feeds}
        emitter = StatsEmitter(self.sink.bootstrap, self.sink.naming.topic_prefix)
        await emitter.start()
        try:
            await SourceReporter(emitter, feeds, every).run(lambda: self.stats, self.ops_stats_every_s)
        finally:
            await emitter.stop()

    def figures(self) -> dict[str, Any]:
        """Everything the health work needs, as plain values."""
        return {
            "sources": {name: s.as_dict() for name, s in self.stats.items()},
            "kafka": self.sink.stats.as_dict(),
        }

    def _push_token(self, names: list[str]) -> str:
        """The token push sources ask of operators ("" when no push source runs)."""
        pushed = [name for name in names if name in PUSH_SOURCES]
        if not pushed:
            return ""
        token = resolve(OCPI_PUSH_TOKEN, self.settings, configured=self.settings.ocpi_push_token)
        if token.file is not None:
            log.warning(
                "push source(s) %s: %s is not set; operators must present the development token stored in %s",
                ", ".join(pushed),
                OCPI_PUSH_TOKEN.env_var,
                token.file,
            )
        return token.value

    async def _create_topics(self) -> None:
        try:
            await ensure_adapter_topics(self.settings, self.sink.naming)
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
        bind_host: str | None = None,
    ) -> None:
        """Run until cancelled. ``urls`` and ``intervals`` override a source's configured URL and poll
        interval; ``metrics_port`` (0: any free port, see ``self.metrics.port``) serves ``/metrics``.
        The push receiver and the metrics listen on ``bind_host`` (default: the settings', loopback)."""
        host = bind_host or self.settings.bind_host
        names = list(names)
        for name in names:
            if name not in PUSH_SOURCES:
                get_source(name)  # unknown names fail before anything starts
        push_token = self._push_token(names)  # before anything starts: production without one stops here
        for name in names:
            self.stats.setdefault(name, SourceStats(source=name))
        intervals = intervals or {}
        urls = urls or {}
        tasks: list[asyncio.Task[None]] = []
        try:
            if metrics_port is not None:
                self.metrics = MetricsServer(RuntimeCollector(lambda: self.stats, lambda: self.sink.stats))
                await self.metrics.start(host, metrics_port)
            if create_topics:
                # Beside polling, not before it: while Kafka is away, records wait in the sink.
                tasks.append(asyncio.create_task(self._create_topics(), name="create-topics"))
            await self.sink.start()
            if self.ops_stats:
                tasks.append(asyncio.create_task(self._report_stats(names, intervals), name="ops-stats"))
            if any(name in PUSH_SOURCES or SOURCES[name].full_sync for name in names):
                location_log = LocationLog(
                    self.sink.bootstrap,
                    self.sink.naming,
                    self.locations,
                    replication_factor=self.settings.replication_factor,
                )
                await location_log.load()  # before the receiver listens: a PATCH finds what it knew
                tasks.append(asyncio.create_task(location_log.follow(), name="ocpi-location-log"))
            async with aiohttp.ClientSession() as session:
                pollers: list[asyncio.Task[None]] = []
                for name in names:
                    stats = self.stats[name]
                    if name in PUSH_SOURCES:
                        receiver = PushReceiver(
                            name=name,
                            sink=self.sink,
                            stats=stats,
                            token=push_token,
                            store=self.locations,
                            log_locations=True,
                        )
                        self.push_receivers.append(receiver)
                        await receiver.start(host, push_port)
                        continue
                    config: SourceConfig = SOURCES[name]
                    if config.full_sync:
                        sync = LocationSync(
                            store=self.locations,
                            name=name,
                            url=urls.get(name) or config.resolved_url(self.settings),
                            interval_s=intervals.get(name, config.interval_s),
                            timeout_s=config.timeout_s,
                            session=session,
                            sink=self.sink,
                            stats=stats,
                            headers=config.request_headers(self.settings),
                        )
                        self.location_syncs.append(sync)
                        pollers.append(asyncio.create_task(sync.run_forever(), name=f"adapter-{name}"))
                        continue
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
                            newest_ingested, self.sink.bootstrap, self.sink.naming.raw_topic(config.feed), name
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
