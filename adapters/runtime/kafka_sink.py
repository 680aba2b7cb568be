"""Produce to Kafka without losing or repeating anything: a bounded buffer handed to one idempotent producer.

A message counts as delivered only when the broker acknowledged it (acks=all). The producer is idempotent
and kept for the sink's whole life: while the broker is down, aiokafka retries the batches already handed
to it with their original sequence numbers, so a batch the broker wrote but whose acknowledgement was lost
is not written twice when the broker comes back (except after a broker killed outright: docs/contracts.md).
Messages not yet handed over wait in the sink's buffer; when it is full, ``submit`` waits, which slows the
pollers instead of dropping records.

Each message may carry a ``receipt``: called with True once acknowledged, or False if Kafka refused it for
good (e.g. too large), so the caller can send it again later. A producer that died (its sender task
failed) is replaced, and a handed-over message whose send failed with an unknown outcome (a request that
timed out while the broker restarted under load) is sent again: only then can a message be written twice,
which downstream dedupe by (entity, observed_at) absorbs. ``stats.resent_after_failure`` and
``stats.producer_restarts`` say whether that can have happened.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from access.identity import kafka_options
from kafka_admin.partitioning import partition_for
from schemas import Naming, now_ms

from .backoff import Backoff
from .routing import OutMessage
from .shutdown import cancel_within, stop_within

log = logging.getLogger(__name__)

# Bigger batches than aiokafka's 16 KiB default: one produce request per round trip carries far more
# records, which is what bounds throughput (aiokafka keeps one request in flight per broker).
DEFAULT_PRODUCER_OPTIONS: dict[str, Any] = {"max_batch_size": 512 * 1024, "linger_ms": 20}
# How long stopping the drain task or a producer may take once the flush is over: past it they are abandoned.
STOP_TIMEOUT_S = 2.0


@dataclass
class SinkStats:
    delivered: int = 0
    buffered: int = 0  # accepted by the sink and not yet acknowledged (waiting + in flight)
    in_flight: int = 0  # handed to the producer, not yet acknowledged
    buffer_limit: int = 0
    send_failures: int = 0  # attempts that failed and will be retried
    undeliverable: int = 0  # refused by Kafka for good (receipt called with False)
    producer_restarts: int = 0
    # handed to the producer, failed without proof that nothing was written (e.g. the request timed out
    # while the broker was restarting), and sent again: each may be in the topic twice
    resent_after_failure: int = 0
    connected: bool = False
    last_error: str | None = None
    last_delivery_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_permanent(err: BaseException) -> bool:
    """Errors that sending the same message again cannot cure."""
    if isinstance(err, MessageSizeTooLargeError | TypeError | ValueError):
        return True
    return isinstance(err, KafkaError) and not err.retriable and not isinstance(err, KafkaTimeoutError)


def _producer_dead(producer: AIOKafkaProducer) -> bool:
    # aiokafka exposes no public health check: a producer whose sender task ended (e.g. sequence numbers out
    # of order after a broker lost data) refuses every send from then on.
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return bool(getattr(producer, "_closed", False)) or (task is not None and task.done())


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        *,
        max_buffered: int = 200_000,
        max_in_flight: int = 50_000,
        client_id: str = "shfeeds-adapters",
        request_timeout_ms: int = 30_000,
        retry_backoff: Backoff | None = None,
        producer_options: dict[str, Any] | None = None,
        close_timeout_s: float = 10.0,
        topic_prefix: str = "",
    ) -> None:
        self.bootstrap = bootstrap
        # Prepended to every topic, like the stream workers' and servers' --topic-prefix: one Kafka can hold
        # several environments, and tests never write into a running service's topics.
        self.naming = Naming(topic_prefix=topic_prefix)
        self.close_timeout_s = close_timeout_s
        self.max_buffered = max_buffered
        self.max_in_flight = max_in_flight
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.producer_options = {**DEFAULT_PRODUCER_OPTIONS, **(producer_options or {})}
        self.stats = SinkStats(buffer_limit=max_buffered)
        self._waiting: collections.deque[OutMessage] = collections.deque()  # not yet handed to the producer
        self._retry: list[OutMessage] = []  # handed over, failed retriably: go out again first
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._waiters = 0
        self._producer: AIOKafkaProducer | None = None
        self._backoff = retry_backoff or Backoff(base_s=0.5, cap_s=15.0)
        self._task: asyncio.Task[None] | None = None

    # -- accounting ------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages accepted and not yet acknowledged."""
        return len(self._waiting) + len(self._retry) + self._in_flight

    def _notify(self) -> None:
        self.stats.buffered = self.pending
        self.stats.in_flight = self._in_flight
        if self._waiters:
            # Replace the event so every current waiter wakes and later waiters wait for the next change.
            self._wake.set()
            self._wake = asyncio.Event()

    async def _wait_until(self, predicate: Any) -> None:
        while not predicate():
            self._waiters += 1
            try:
                await self._wake.wait()
            finally:
                self._waiters -= 1

    # -- public API ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain_forever(), name="kafka-sink")

    async def submit(self, message: OutMessage) -> None:
        """Queue one message; waits while the buffer is full (never drops)."""
        await self.submit_many((message,))

    async def submit_many(self, messages: Sequence[OutMessage]) -> None:
        """Queue messages in order; waits while the buffer is full (never drops). The messages are taken
        together once there is room, so the buffer may pass its limit by one call's messages: a whole-fleet
        poll hands over a chunk at a time, and one wake-up per chunk instead of per message was ~5 % of
        the adapter's CPU (docs/benchmarks-adapters.md)."""
        if not messages:
            return
        if self.pending >= self.max_buffered:
            await self._wait_until(lambda: self.pending < self.max_buffered)
        self._waiting.extend(messages)
        self._notify()

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything queued so far has been acknowledged (or refused for good)."""
        async with asyncio.timeout(timeout_s):
            await self._wait_until(lambda: self.pending == 0)

    async def close(self, timeout_s: float | None = None) -> None:
        """Flush what can be flushed in ``timeout_s`` (default ``close_timeout_s``), then stop; reports what
        is left unsent."""
        if timeout_s is None:
            timeout_s = self.close_timeout_s
        with contextlib.suppress(TimeoutError):
            await self.flush(timeout_s)
        if self.pending:
            log.error("kafka sink closing with %d messages not delivered", self.pending)
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_within([task], STOP_TIMEOUT_S, "kafka sink")
        await self._stop_producer(timeout_s=STOP_TIMEOUT_S)

    # -- the drain task --------------------------------------------------------------------------------

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None and _producer_dead(self._producer):
            log.error("kafka producer died; starting a new one (messages in flight are sent again)")
            self.stats.producer_restarts += 1
            await self._stop_producer(timeout_s=STOP_TIMEOUT_S)
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                **kafka_options(),
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=self.request_timeout_ms,
                **self.producer_options,
            )
            try:
                await producer.start()
            except BaseException:
                await stop_within(producer.stop(), STOP_TIMEOUT_S, "kafka producer")
                raise
            self._producer = producer
            self.stats.connected = True
        return self._producer

    async def _stop_producer(self, timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        self.stats.connected = False
        if producer is not None:
            # stop() flushes first, which never ends while the broker is away: bound it (see shutdown.py).
            await stop_within(producer.stop(), timeout_s, "kafka producer")

    def _settled(self, messages: list[OutMessage], producer: AIOKafkaProducer, future: asyncio.Future[Any]) -> None:
        """A produce batch's outcome, told to each of its messages."""
        self._in_flight -= len(messages)
        err = None if future.cancelled() else future.exception()
        # A dying producer fails everything it held, whatever the error: those go out again.
        retry = err is not None and (not _is_permanent(err) or _producer_dead(producer))
        if future.cancelled() or retry:
            self._retry.extend(messages)
            self.stats.send_failures += len(messages)
            self.stats.resent_after_failure += len(messages)
            self.stats.last_error = f"{type(err).__name__}: {err}" if err else "send cancelled"
        elif err is not None:
            self.stats.undeliverable += len(messages)
            self.stats.last_error = f"{type(err).__name__}: {err}"
            log.error("kafka refused %d messages to %s for good: %s", len(messages), messages[0].topic, err)
            for message in messages:
                if message.receipt is not None:
                    message.receipt(False)
        else:
            self.stats.delivered += len(messages)
            self.stats.connected = True
            self.stats.last_delivery_ms = now_ms()
            for message in messages:
                if message.receipt is not None:
                    message.receipt(True)
        self._notify()

    async def _drain_forever(self) -> None:
        while True:
            await self._wait_until(lambda: (self._waiting or self._retry) and self._in_flight < self.max_in_flight)
            if self._retry:
                # Failed messages go out again before newer ones (per partition they failed in order).
                self._waiting.extendleft(reversed(self._retry))
                self._retry.clear()
            try:
                producer = await self._ensure_producer()
                await self._hand_over(producer)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.stats.send_failures += 1
                self.stats.connected = False
                self.stats.last_error = f"{type(err).__name__}: {err}"
                delay = self._backoff.next_delay()
                log.error(
                    "kafka at %s unavailable (%s); %d messages held, retrying in %.1f s",
                    self.bootstrap,
                    self.stats.last_error,
                    self.pending,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()

    async def _hand_over(self, producer: AIOKafkaProducer) -> None:
        """Give waiting messages to the producer, one produce batch per topic partition, until the in-flight
        window is full. A batch costs the producer one future and one call where a message each cost their
        own: at a whole-fleet response that was most of the adapter's time after parsing."""
        while self._waiting and self._in_flight < self.max_in_flight:
            room = min(len(self._waiting), self.max_in_flight - self._in_flight)
            taken = [self._waiting.popleft() for _ in range(room)]
            try:
                groups = await self._by_partition(producer, taken)
            except BaseException:
                self._waiting.extendleft(reversed(taken))
                raise
            pending = list(groups.items())
            for number, ((topic, partition), messages) in enumerate(pending):
                try:
                    await self._send_group(producer, topic, partition, messages)
                except BaseException:
                    # The groups not handed over wait again (_send_group put back what it did not hand over).
                    self._waiting.extendleft(reversed([m for _, later in pending[number + 1 :] for m in later]))
                    raise
        self._notify()

    async def _by_partition(
        self, producer: AIOKafkaProducer, messages: list[OutMessage]
    ) -> dict[tuple[str, int], list[OutMessage]]:
        """``messages`` grouped by the partition Kafka's default partitioner gives their key, in order, under
        the topics' full names (the sink's prefix is added here, once a topic rather than once a message)."""
        topics: dict[str, tuple[str, int]] = {}  # the message's topic → (full name, partition count)
        groups: dict[tuple[str, int], list[OutMessage]] = {}
        for message in messages:
            known = topics.get(message.topic)
            if known is None:
                name = self.naming.topic(message.topic)
                known = topics[message.topic] = (name, len(await producer.partitions_for(name)))
            groups.setdefault((known[0], partition_for(message.key, known[1])), []).append(message)
        return groups

    async def _send_group(
        self, producer: AIOKafkaProducer, topic: str, partition: int, messages: list[OutMessage]
    ) -> None:
        """Hand ``messages`` (one partition's, in order) to the producer in as few batches as they fit in."""

        def append(batch: Any, message: OutMessage) -> bool:
            added = batch.append(
                key=message.key, value=message.value, timestamp=message.timestamp_ms, headers=message.headers
            )
            return added is not None

        batches: list[tuple[Any, list[OutMessage]]] = []
        batch = producer.create_batch()
        members: list[OutMessage] = []
        for message in messages:
            try:
                if not append(batch, message):
                    if members:
                        batches.append((batch, members))
                        batch, members = producer.create_batch(), []
                    if not append(batch, message):
                        size = len(message.value)
                        raise MessageSizeTooLargeError(f"{size} bytes exceed a produce batch")
            except (TypeError, ValueError, MessageSizeTooLargeError) as err:  # no retry can send it
                self._settled_refused(message, err)
                continue
            members.append(message)
        if members:
            batches.append((batch, members))
        for number, (full, batch_members) in enumerate(batches):
            try:
                future = await producer.send_batch(full, topic, partition=partition)
            except BaseException:
                self._waiting.extendleft(reversed([m for _, rest in batches[number:] for m in rest]))
                raise
            self._in_flight += len(batch_members)
            future.add_done_callback(functools.partial(self._settled, batch_members, producer))

    def _settled_refused(self, message: OutMessage, err: BaseException) -> None:
        self.stats.undeliverable += 1
        self.stats.last_error = f"{type(err).__name__}: {err}"
        log.error("kafka refused a message to %s for good: %s", message.topic, self.stats.last_error)
        if message.receipt is not None:
            message.receipt(False)
        self._notify()
