"""The archiver process: reads every tier topic and writes it to the archive, committing Kafka offsets
only after the files holding those records are durable. On start it resumes from the later of its
committed offsets and what the archive already holds, so a crash between writing a file and committing
neither loses nor repeats records."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import OffsetAndMetadata

from access.identity import kafka_options
from kafka_admin import topic_partitions
from replay.merge import SourceRecord
from streams.policy import load_policy
from streams.policy.record_schema import tier_record_schema

from .config import ArchiveConfig
from .layout import SHANGHAI, archived_to, files_of
from .writer import TopicArchiveWriter

log = logging.getLogger(__name__)


class ArchiveError(RuntimeError):
    """The archiver cannot start; ``str(err)`` says why."""


class Archiver:
    def __init__(self, config: ArchiveConfig) -> None:
        self.config = config
        policy = load_policy(config.policy_path)
        self.writers: dict[str, TopicArchiveWriter] = {}
        for feed in config.feeds:
            if feed not in policy.feeds:
                continue
            for tier in config.tiers:
                topic = config.topic(tier, feed)
                schema = tier_record_schema(policy, feed, tier)
                self.writers[topic] = TopicArchiveWriter(config.root, feed, tier, topic, schema)
        self.records_archived = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._oldest_pending: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        cfg.root.mkdir(parents=True, exist_ok=True)
        if cfg.kafka_retention_ms is not None:
            await self.apply_kafka_retention()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            **kafka_options(),
            group_id=cfg.group_id,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            await self._assign(consumer)
            last_retention = 0.0
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
                for tp, records in batches.items():
                    if records:
                        kept = [
                            SourceRecord(r.timestamp, tp.partition, r.offset, r.key.decode(), r.value)
                            for r in records
                            if r.key is not None and r.value is not None
                        ]
                        self.writers[tp.topic].add(tp.partition, kept, records[-1].offset + 1)
                        if self._oldest_pending is None:
                            self._oldest_pending = time.monotonic()
                if self._flush_due():
                    await self.flush()
                if time.monotonic() - last_retention > 3600:
                    last_retention = time.monotonic()
                    self.apply_archive_retention()
            await self.flush()
        finally:
            await consumer.stop()
            self._consumer = None

    def _flush_due(self) -> bool:
        pending = sum(w.pending for w in self.writers.values())
        if pending >= self.config.flush_records:
            return True
        return (
            self._oldest_pending is not None and time.monotonic() - self._oldest_pending >= self.config.flush_interval_s
        )

    async def flush(self) -> None:
        """Write what waits, durably, then commit the offsets it covers."""
        consumer = self._consumer
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        for topic, writer in self.writers.items():
            pending = writer.pending
            for partition, offset in writer.flush().items():
                commits[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "")
            self.records_archived += pending
        self._oldest_pending = None
        if consumer is not None and commits:
            await consumer.commit(commits)

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        tps: list[TopicPartition] = []
        for topic in self.writers:
            partitions = await topic_partitions(self.config.bootstrap, topic)
            if not partitions:
                # Topics are created up front (docs/contracts.md); exit so the supervisor retries later.
                raise ArchiveError(f"topic {topic} does not exist yet; create the topics first")
            tps += [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        beginnings = await consumer.beginning_offsets(tps)
        for topic, writer in self.writers.items():
            held = archived_to(files_of(self.config.root, writer.feed, writer.tier))
            for tp in (tp for tp in tps if tp.topic == topic):
                committed = await consumer.committed(tp)
                start = max(committed or 0, held.get(tp.partition, 0), beginnings[tp])
                consumer.seek(tp, start)
        log.info("archiving %d partitions of %d tier topics into %s", len(tps), len(self.writers), self.config.root)

    def apply_archive_retention(self, today: dt.date | None = None) -> list[str]:
        """Delete archive days older than ``retention_days``; returns the folders deleted."""
        days = self.config.retention_days
        if days <= 0:
            return []
        today = today or dt.datetime.now(SHANGHAI).date()
        cutoff = today - dt.timedelta(days=days)
        gone: list[str] = []
        for folder in sorted(self.config.root.glob("feed=*/tier=*/date=*")):
            try:
                day = dt.date.fromisoformat(folder.name.removeprefix("date="))
            except ValueError:
                continue
            if day < cutoff:
                shutil.rmtree(folder)
                gone.append(str(folder.relative_to(self.config.root)))
        return gone

    async def apply_kafka_retention(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.config.bootstrap, **kafka_options())
        await admin.start()
        try:
            resources = [
                ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": str(self.config.kafka_retention_ms)})
                for topic in self.writers
            ]
            await admin.alter_configs(resources)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


async def run_archiver(config: ArchiveConfig) -> int:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await Archiver(config).run(stop)
    except ArchiveError as err:
        log.error("%s", err)
        return 1
    return 0
