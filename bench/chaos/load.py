"""Load on the bus feed whatever the hour: the simulated city runs few buses at night, so a chaos run adds a
fleet of its own, written to ``raw.bus`` through the adapters' own Kafka sink (idempotent producer, the
same retries), each vehicle reporting once a second and moving a few metres each time."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from adapters.runtime import KafkaSink
from adapters.runtime.routing import OutMessage
from schemas import VehiclePosition, encode_kafka, raw_topic

SOURCE = "chaos-load"


@dataclass
class Fleet:
    bootstrap: str
    vehicles: int = 300
    period_s: float = 1.0
    sent: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def _position(self, n: int, tick: int, now: int) -> VehiclePosition:
        # A slow circle around a point of its own: ~4 m a second, well inside the clean stage's speed check.
        angle = tick * 0.0004 + n
        lng = 121.30 + (n % 20) * 0.02 + 0.01 * math.cos(angle)
        lat = 31.10 + (n // 20) * 0.015 + 0.01 * math.sin(angle)
        return VehiclePosition(
            id=f"LOAD-{n:05d}",
            source=SOURCE,
            observed_at=now,
            expires_at=now + 120_000,
            lng=round(lng, 7),
            lat=round(lat, 7),
            route_id="71",
            label=f"L{n:04d}",
            speed_kmh=14.0,
            seq=tick,
        )

    async def run(self, stop: asyncio.Event) -> None:
        sink = KafkaSink(self.bootstrap, request_timeout_ms=10_000, close_timeout_s=90.0)
        await sink.start()
        topic = raw_topic("bus")
        tick = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                now = int(time.time() * 1000)
                for n in range(self.vehicles):
                    record = self._position(n, tick, now)
                    await sink.submit(OutMessage(topic, record.id.encode(), encode_kafka(record), now, []))
                    self.sent += 1
                tick += 1
                await asyncio.sleep(max(0.0, self.period_s - (time.monotonic() - started)))
        finally:
            await sink.close()
            s = sink.stats
            self.stats = {
                "submitted": self.sent,
                "delivered": s.delivered,
                "buffered": s.buffered,
                "undeliverable": s.undeliverable,
                "producer_restarts": s.producer_restarts,
            }
