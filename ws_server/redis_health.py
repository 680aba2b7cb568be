"""Whether this node can reach Redis, as its /healthz reports it.

Redis holds the snapshots new subscriptions start from and the API keys; while it is down the node keeps
serving live deltas from Kafka to open streams, but a first subscription to a feed this node has not loaded
yet, or a connection with a key, cannot be served. So /healthz says ``degraded`` with the reason and since
when, and says ``ok`` again once a ping answers. The state transitions are pure (``RedisHealth.observe``);
``watch`` is the loop that pings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class RedisHealth:
    up: bool = True
    since_ms: int | None = None  # when the present state began (None: as at start-up, not yet checked)
    error: str = ""
    outages: int = 0

    def observe(self, ok: bool, now_ms: int, error: str = "") -> None:
        if ok != self.up:
            self.since_ms = now_ms
            if not ok:
                self.outages += 1
                log.warning("Redis is not answering (%s): new snapshots and key checks wait for it", error)
            else:
                log.info("Redis answers again")
        elif self.since_ms is None:
            self.since_ms = now_ms
        self.up = ok
        self.error = "" if ok else error

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": "up" if self.up else "down", "since_ms": self.since_ms, "outages": self.outages}
        if self.error:
            out["error"] = self.error
        return out


async def watch(
    health: RedisHealth,
    ping: Callable[[], Awaitable[Any]],
    clock: Callable[[], int],
    interval_s: float = 1.0,
    timeout_s: float = 1.0,
) -> None:
    """Ping every ``interval_s``; a ping that fails or takes over ``timeout_s`` marks Redis down."""
    while True:
        try:
            await asyncio.wait_for(ping(), timeout_s)
        except Exception as err:  # any failure to answer is "down", whatever the client raised
            health.observe(False, clock(), f"{type(err).__name__}: {err}"[:200] or type(err).__name__)
        else:
            health.observe(True, clock())
        await asyncio.sleep(interval_s)
