"""Sends stats records to ``ops.stats`` without ever holding up the caller.

``emit`` only appends to a bounded queue; a background task produces. Records queued within
``linger_s`` (a second) of each other go as one message, a JSON array (``figures.decode_stats``): a busy stage
emits a record per batch, dozens a second, and the control plane's cost follows the number of messages
(one Faust event and one table write per key each), not the records in them. Stats are figures about
the pipeline, not data of record: when Kafka is away the oldest are dropped rather than the queue
growing, and a failed send is logged once and forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from access.identity import kafka_options
from schemas import Naming

log = logging.getLogger(__name__)
MAX_BUNDLE = 1000  # records per message, well under Kafka's message size at a few hundred bytes each


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StatsEmitter:
    def __init__(self, bootstrap: str, topic_prefix: str = "", max_queued: int = 10_000, linger_s: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.linger_s = linger_s
        self.topic = Naming(topic_prefix).ops_stats_topic()
        self.queue: deque[dict[str, Any]] = deque(maxlen=max_queued)
        self.dropped = 0
        self.sent = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._failing = False
        self._sending = False  # a bundle is out of the queue and not yet acknowledged

    def emit(self, record: dict[str, Any]) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(record)
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ops-stats-emitter")

    async def stop(self, flush_s: float = 2.0) -> None:
        if self._task is None:
            return
        # Give the queue a moment to drain so a clean stop loses no figures.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_s
        while (self.queue or self._sending) and self._producer is not None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _connect(self) -> AIOKafkaProducer:
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, **kafka_options(), client_id="shfeeds-ops-stats", linger_ms=50, acks=1
            )
            try:
                await producer.start()
                return producer
            except Exception as err:
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.warning("ops stats: Kafka not reachable (%s); retrying", err)
                await asyncio.sleep(2.0)

    async def _run(self) -> None:
        from kafka_admin import ensure_topics

        self._producer = await self._connect()
        with contextlib.suppress(Exception):
            await ensure_topics(self.bootstrap, 1, [self.topic])
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.linger_s)  # gather what else comes within the linger into one message
            self._wake.clear()
            while self.queue:
                bundle = [self.queue.popleft() for _ in range(min(len(self.queue), MAX_BUNDLE))]
                self._sending = True
                try:
                    await self._producer.send(self.topic, orjson.dumps(bundle))
                except Exception as err:
                    self._sending = False
                    if not self._failing:
                        log.warning("ops stats: could not send (%s); dropping figures until Kafka answers", err)
                    self._failing = True
                    self.queue.extendleft(reversed(bundle))  # retried; a full queue drops the newest
                    await asyncio.sleep(1.0)
                    continue
                self._failing = False
                self._sending = False
                self.sent += len(bundle)
