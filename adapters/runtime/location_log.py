"""The OCPI Locations the charging adapters learned, kept in Kafka so that a restart forgets nothing.

Every Location the push receiver accepts, and every one the full sync takes, is written whole to the
compacted topic ``state.ocpi_locations`` (key ``<country_code>*<party_id>*<id>``, header ``source``). On start
the log is read from its beginning into the ``LocationStore`` before the receiver listens, so a PATCH for a
Location learned before a restart finds it; afterwards the log is followed, so a receiver and a sync that
run in different processes still share what each learned (newest ``last_updated`` wins, see
``adapters/formats/ocpi_location_store.py``).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from access.identity import kafka_options
from adapters.formats.common import JsonDict
from adapters.formats.ocpi_location_store import LocationStore, updated_ms
from kafka_admin import ensure_topics, topic_partitions
from schemas import Naming, now_ms
from schemas.topics import OCPI_LOCATIONS

from .backoff import Backoff
from .routing import OutMessage
from .shutdown import stop_within

log = logging.getLogger(__name__)

TOPIC_CONFIGS = {"cleanup.policy": "compact"}


def location_message(key: str, location: JsonDict, source: str) -> OutMessage:
    """The log entry for one Location (the sink puts its topic prefix in front)."""
    return OutMessage(
        topic=OCPI_LOCATIONS,
        key=key.encode(),
        value=orjson.dumps(location),
        timestamp_ms=updated_ms(location) or now_ms(),
        headers=[("source", source.encode())],
    )


class LocationLog:
    def __init__(self, bootstrap: str, naming: Naming, store: LocationStore, *, replication_factor: int = 1) -> None:
        self.bootstrap = bootstrap
        self.topic = naming.ocpi_locations_topic()
        self.store = store
        self.replication_factor = replication_factor
        self.loaded = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def _learn(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        try:
            location = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("%s: an entry that is not JSON under key %r is ignored", self.topic, key[:80])
            return
        if isinstance(location, dict):
            self.store.offer(key.decode(errors="replace"), location)

    async def _load_once(self, timeout_s: float) -> int:
        await ensure_topics(
            self.bootstrap,
            1,
            [self.topic],
            replication_factor=self.replication_factor,
            configs={self.topic: TOPIC_CONFIGS},
        )
        partitions = [TopicPartition(self.topic, p) for p in await topic_partitions(self.bootstrap, self.topic)]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **kafka_options(),
            enable_auto_commit=False,
            request_timeout_ms=int(timeout_s * 1000),
        )
        await asyncio.wait_for(consumer.start(), timeout_s)
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            read = 0
            remaining = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=int(timeout_s * 1000))
                if not batch:
                    raise TimeoutError(f"{self.topic}: no records within {timeout_s} s")
                for messages in batch.values():
                    for message in messages:
                        self._learn(message.key, message.value)
                        read += 1
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        except BaseException:
            await stop_within(consumer.stop(), timeout_s, "location log consumer")
            raise
        self._consumer = consumer  # kept at the end of the log for ``follow``
        return read

    async def load(self, timeout_s: float = 15.0) -> None:
        """Read the whole log into the store; retried until Kafka answers (a receiver that started without
        it would refuse PATCHes for Locations it knew)."""
        backoff = Backoff(base_s=1.0, cap_s=30.0)
        while True:
            try:
                read = await self._load_once(timeout_s)
            except (KafkaError, OSError, TimeoutError) as err:
                delay = backoff.next_delay()
                log.warning("%s: cannot read the OCPI Locations learned so far (%s); next try in %.1f s",
                            self.topic, err, delay)  # fmt: skip
                await asyncio.sleep(delay)
                continue
            log.info("%s: %d Locations known from %d log entries", self.topic, len(self.store), read)
            self.loaded.set()
            return

    async def follow(self) -> None:
        """Keep learning what other processes write to the log; until cancelled."""
        await self.loaded.wait()
        consumer = self._consumer
        if consumer is None:
            return
        try:
            while True:
                try:
                    batch = await consumer.getmany(timeout_ms=1000)
                except KafkaError as err:
                    log.warning("%s: following the log failed (%s); retrying", self.topic, err)
                    await asyncio.sleep(1.0)
                    continue
                for messages in batch.values():
                    for message in messages:
                        self._learn(message.key, message.value)
        finally:
            await stop_within(consumer.stop(), 5.0, "location log consumer")
            self._consumer = None
