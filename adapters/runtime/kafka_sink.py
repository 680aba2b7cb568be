"""Produce to Kafka without losing anything: a bounded buffer drained by one task that retries forever.

A message leaves the buffer only after the broker acknowledged it (acks=all, idempotent producer). While
Kafka is unreachable the buffer fills; when full, ``submit`` waits, which slows the pollers instead of
dropping records. Delivery is at-least-once: a batch that failed half-way is sent again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from .backoff import Backoff
from .routing import OutMessage

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    delivered: int = 0
    buffered: int = 0
    buffer_limit: int = 0
    send_failures: int = 0
    connected: bool = False
    last_error: str | None = None
    last_delivery_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        *,
        max_buffered: int = 200_000,
        batch_max: int = 5_000,
        client_id: str = "shfeeds-adapters",
        request_timeout_ms: int = 10_000,
        retry_backoff: Backoff | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.max_buffered = max_buffered
        self.batch_max = batch_max
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.stats = SinkStats(buffer_limit=max_buffered)
        self._buffer: collections.deque[OutMessage] = collections.deque()
        self._changed = asyncio.Condition()
        self._producer: AIOKafkaProducer | None = None
        self._backoff = retry_backoff or Backoff(base_s=0.5, cap_s=15.0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain_forever(), name="kafka-sink")

    async def submit(self, message: OutMessage) -> None:
        """Queue one message; waits while the buffer is full (never drops)."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._buffer) < self.max_buffered)
            self._buffer.append(message)
            self.stats.buffered = len(self._buffer)
            self._changed.notify_all()

    async def submit_many(self, messages: list[OutMessage]) -> None:
        for message in messages:
            await self.submit(message)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything queued so far has been acknowledged."""
        async with asyncio.timeout(timeout_s):
            async with self._changed:
                await self._changed.wait_for(lambda: not self._buffer)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush what can be flushed in ``timeout_s``, then stop; reports what is left unsent."""
        with contextlib.suppress(TimeoutError):
            await self.flush(timeout_s)
        if self._buffer:
            log.error("kafka sink closing with %d messages not delivered", len(self._buffer))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_producer()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=10,
                request_timeout_ms=self.request_timeout_ms,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            self.stats.connected = True
        return self._producer

    async def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        self.stats.connected = False
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _drain_forever(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._buffer))
            batch = [self._buffer[i] for i in range(min(self.batch_max, len(self._buffer)))]
            try:
                producer = await self._ensure_producer()
                futures = [
                    await producer.send(m.topic, m.value, key=m.key, timestamp_ms=m.timestamp_ms, headers=m.headers)
                    for m in batch
                ]
                await asyncio.gather(*futures)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.stats.send_failures += 1
                self.stats.last_error = f"{type(err).__name__}: {err}"
                delay = self._backoff.next_delay()
                log.error(
                    "kafka at %s unavailable (%s); %d messages held, retrying in %.1f s",
                    self.bootstrap,
                    self.stats.last_error,
                    len(self._buffer),
                    delay,
                )
                await self._stop_producer()
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            async with self._changed:
                for _ in batch:
                    self._buffer.popleft()
                self.stats.delivered += len(batch)
                self.stats.buffered = len(self._buffer)
                self.stats.last_delivery_ms = int(time.time() * 1000)
                self._changed.notify_all()
