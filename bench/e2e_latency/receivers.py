"""What the bench receives, stamped on arrival: raw.bus and tier.operator.bus as a Kafka reader sees them,
and the operator-tier client's deltas. Each keeps the first moment it had each ``(id, observed_at)``.

Raw and tier records are keyed by the bus id with ``observed_at`` as the Kafka timestamp (the adapter and the
stream worker write them so), so neither is decoded here. The operator tier keeps the raw id (its policy
takes no field operations), so the client's ``id`` and ``observed_at`` name the same report the source served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import connect

from access.identity import kafka_options
from bench.e2e_latency.summary import Report

MSGPACK = "shfeeds.v1.msgpack"


def now_ms() -> int:
    return int(time.time() * 1000)


class TopicStamps:
    """First arrival per report on one topic, read from its end (the run's topics are its own)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, **kafka_options(), auto_offset_reset="latest", group_id=None
        )
        self.first: dict[Report, int] = {}
        self.records = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.start()
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=200, max_records=5000)
                t = now_ms()
                for messages in batch.values():
                    for m in messages:
                        if m.key is not None:
                            self.first.setdefault((m.key.decode(), m.timestamp), t)
                    self.records += len(messages)
        finally:
            await self.consumer.stop()


class OperatorClient:
    """One WebSocket client with an operator key on the whole bus feed, no snapshot: live deltas only."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.first: dict[Report, int] = {}
        self.frames = 0
        self.conflated = 0
        self.repeats = 0
        self.subscribed = asyncio.Event()
        self.errors: list[str] = []

    def take(self, message: dict[str, Any], t: int) -> None:
        """Stamp the records of one server frame received at ``t``."""
        kind = message.get("type")
        if kind == "subscribed":
            self.subscribed.set()
        elif kind == "error":
            self.errors.append(str(message.get("code")))
        if kind != "delta":
            return
        self.frames += 1
        self.conflated += bool(message.get("conflated"))
        for record in message.get("upsert") or ():
            report = (record.get("id"), record.get("observed_at"))
            if isinstance(report[0], str) and isinstance(report[1], int):
                if report in self.first:
                    self.repeats += 1
                else:
                    self.first[report] = t

    async def run(self) -> None:
        """Until cancelled (no reconnection: a dropped connection ends the run's client figures)."""
        headers = {"Authorization": f"Bearer {self.key}"}
        subscribe = {"type": "subscribe", "id": "all", "feed": "bus", "options": {"snapshot": False}}
        async with connect(self.url, subprotocols=[MSGPACK], additional_headers=headers, max_size=None) as ws:  # type: ignore[list-item]
            await ws.send(msgpack.packb(subscribe))
            async for frame in ws:
                t = now_ms()
                self.take(msgpack.unpackb(frame), t)


def adapter_figures(metrics_text: str) -> dict[str, float]:
    """``shfeeds_adapter_*`` samples of a Prometheus text page, by name without the prefix (one source)."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("shfeeds_adapter_"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name.split("{", 1)[0].removeprefix("shfeeds_adapter_")] = float(value)
    return out


class AdapterProbe:
    """The adapter's own account, read from its /metrics twice a second: each poll's fetch + parse +
    hand-over time (a new value of the last-poll gauge is a new poll; at 1 s polls one may be missed) and
    its counters."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.poll_s: list[float] = []
        self.latest: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:
                return adapter_figures(resp.read().decode())
        except OSError:
            return {}

    async def run(self, stop: asyncio.Event, measuring: asyncio.Event) -> None:
        last = None
        while not stop.is_set():
            figures = await asyncio.to_thread(self.read)
            duration = figures.get("last_poll_duration_seconds")  # set by a poll that brought a new body
            if measuring.is_set() and duration is not None and duration != last:
                self.poll_s.append(duration)
            last = duration
            self.latest = figures or self.latest
            await asyncio.sleep(0.5)
