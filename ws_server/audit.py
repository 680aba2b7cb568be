"""Licensed-tier access log: what each licensed client received, per batch window, produced to the
``audit.access`` topic as a hash chain per node (see ``audit_chain``), each write anchored by a signed
checkpoint in ``audit.checkpoints`` (see ``audit_checkpoint``).

WebSocket deliveries and replays are recorded through ``recorder`` and ``replay_recorder``; deliveries over
plain HTTP (GTFS-Realtime, and any other HTTP endpoint) through ``record_delivery``. The first write creates
both topics with the audit retention (``AUDIT_TOPIC_CONFIG`` in ``schemas/topics.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from access.identity import kafka_options
from kafka_admin import TopicSetupError, ensure_topics
from schemas import now_ms
from schemas.topics import AUDIT_TOPIC_CONFIG

from .audit_chain import GENESIS, chain_entry
from .audit_checkpoint import sign_checkpoint
from .protocol.session import Session
from .protocol.stream import Stream

log = logging.getLogger(__name__)

MAX_UNSENT = 100_000  # entries kept while Kafka is unreachable


@dataclass
class _Batch:
    key_id: str | None
    agreement_id: str | None
    ip: str
    tier: str
    feed: str
    first_ms: int
    records: int = 0
    frames: int = 0
    bytes: int = 0
    fields: set[str] = field(default_factory=set)
    policy_versions: set[str] = field(default_factory=set)
    replay: tuple[int, int] | None = None  # (from, to) of a replay; None for live deliveries
    channel: str | None = None  # "gtfs-rt", "http"...; None for the WebSocket


def _fields_of(stream: Stream) -> tuple[set[str], set[str]]:
    """The field names and policy versions this stream's records carry (a sample of its entities)."""
    names: set[str] = set()
    versions: set[str] = set()
    entries = stream.source.entries
    for n, entity_id in enumerate(stream.inside):
        if n >= 20:
            break
        entry = entries.get(entity_id)
        if entry is not None:
            names.update(entry.record)
            version = entry.record.get("policy_version")
            if version is not None:
                versions.add(str(version))
    return names, versions


class AccessAudit:
    def __init__(self, bootstrap: str, topic: str, chain: str, checkpoint_topic: str, key: bytes) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.checkpoint_topic = checkpoint_topic
        self.key = key
        self.chain = chain
        self.n = 0
        self.prev = GENESIS
        self._batches: dict[tuple[Any, ...], _Batch] = {}
        self._unsent: list[dict[str, Any]] = []
        self._producer: AIOKafkaProducer | None = None
        self.entries_written = 0
        self.checkpoints_written = 0

    def record_delivery(
        self,
        *,
        channel: str,
        key_id: str | None,
        agreement_id: str | None,
        ip: str,
        tier: str,
        feed: str,
        records: list[dict[str, Any]],
        nbytes: int,
    ) -> None:
        """One delivery outside the WebSocket (an HTTP response): its records of ``feed`` and the size of
        the response that carried them. Batched per (channel, key, IP, feed) like the WebSocket's."""
        key = (channel, key_id, ip, feed)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(
                key_id[:16] if key_id else None, agreement_id, ip, tier, feed, now_ms(), channel=channel
            )
        for rec in records:
            batch.fields.update(rec)
            version = rec.get("policy_version")
            if version is not None:
                batch.policy_versions.add(str(version))
        batch.records += len(records)
        batch.frames += 1
        batch.bytes += nbytes

    def recorder(self, session: Session, ip: str) -> Callable[[Stream, bytes, int], None]:
        def record(stream: Stream, frame: bytes, records: int) -> None:
            key = (id(session), stream.source.feed)
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch(
                    session.key_id[:16] if session.key_id else None,
                    session.agreement_id,
                    ip,
                    session.tier,
                    stream.source.feed,
                    now_ms(),
                )
                batch.fields, batch.policy_versions = _fields_of(stream)
            batch.records += records
            batch.frames += 1
            batch.bytes += len(frame)

        return record

    def replay_recorder(
        self, session: Session, ip: str, feed: str, from_ms: int, to_ms: int
    ) -> Callable[[bytes, list[dict[str, Any]]], None]:
        """Like ``recorder``, for one replay: its frames and records, with the fields and policy versions
        of the records actually sent, in entries marked with the replayed range."""

        def record(frame: bytes, records: list[dict[str, Any]]) -> None:
            key = (id(session), f"{feed}|replay|{from_ms}|{to_ms}")
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch(
                    session.key_id[:16] if session.key_id else None,
                    session.agreement_id,
                    ip,
                    session.tier,
                    feed,
                    now_ms(),
                    replay=(from_ms, to_ms),
                )
            for rec in records:
                batch.fields.update(rec)
                version = rec.get("policy_version")
                if version is not None:
                    batch.policy_versions.add(str(version))
            batch.records += len(records)
            batch.frames += 1
            batch.bytes += len(frame)

        return record

    def seal(self, now_ms: int) -> list[dict[str, Any]]:
        """Close the current window: one chained entry per (connection, feed) that received anything."""
        batches, self._batches = self._batches, {}
        sealed = []
        for batch in batches.values():
            body: dict[str, Any] = {
                "at": now_ms,
                "from": batch.first_ms,
                "key_id": batch.key_id,
                "agreement_id": batch.agreement_id,
                "ip": batch.ip,
                "tier": batch.tier,
                "feed": batch.feed,
                "fields": sorted(batch.fields),
                "policy_version": sorted(batch.policy_versions),
                "records": batch.records,
                "frames": batch.frames,
                "bytes": batch.bytes,
            }
            if batch.replay is not None:
                body["replay"] = {"from": batch.replay[0], "to": batch.replay[1]}
            if batch.channel is not None:
                body["channel"] = batch.channel
            entry = chain_entry(self.chain, self.n, self.prev, body)
            self.n += 1
            self.prev = entry["hash"]
            sealed.append(entry)
        return sealed

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._unsent.extend(self.seal(now_ms()))
            if len(self._unsent) > MAX_UNSENT:
                log.error("audit backlog above %d entries; Kafka unreachable?", MAX_UNSENT)
            if self._unsent:
                await self._flush()

    async def _flush(self) -> None:
        head: dict[str, Any] | None = None
        try:
            if self._producer is None:
                topics = [self.topic, self.checkpoint_topic]
                await ensure_topics(self.bootstrap, 1, topics, configs=dict.fromkeys(topics, AUDIT_TOPIC_CONFIG))
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, **kafka_options(), acks="all", linger_ms=5
                )
                await producer.start()
                self._producer = producer
            # One key per chain keeps a chain in one partition, in order; acks come back in order too.
            key = self.chain.encode()
            sends = [
                await self._producer.send(self.topic, orjson.dumps(e), key=key, timestamp_ms=e["at"])
                for e in self._unsent
            ]
            for future in sends:
                await future
                head = self._unsent.pop(0)
                self.entries_written += 1
        except (KafkaError, OSError, TopicSetupError) as err:
            log.warning("audit entries not yet written (%d pending): %s", len(self._unsent), err)
        if head is not None:
            await self._checkpoint(head)

    async def _checkpoint(self, head: dict[str, Any]) -> None:
        """Anchor the chain's newest written entry in the checkpoint topic. A lost checkpoint leaves the
        entries since the last one unanchored only until the next write."""
        assert self._producer is not None
        checkpoint = sign_checkpoint(self.key, self.chain, int(head["n"]), str(head["hash"]), now_ms())
        try:
            sent = await self._producer.send(
                self.checkpoint_topic, orjson.dumps(checkpoint), key=self.chain.encode(), timestamp_ms=checkpoint["at"]
            )
            await sent
            self.checkpoints_written += 1
        except (KafkaError, OSError) as err:
            log.warning("audit checkpoint not written: %s", err)

    async def close(self) -> None:
        self._unsent.extend(self.seal(now_ms()))
        if self._unsent:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), 5)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
