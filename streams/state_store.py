"""Latest state per tier in Redis (docs/contracts.md) and the stream workers' own recovery state.

- ``<prefix>:state:<tier>:<feed>`` hash entity → tier value bytes, and ``...:offsets`` hash partition →
  next tier-topic offset the snapshot covers; both written in one MULTI so a reader never sees values
  without their offsets.
- ``<prefix>:streams:last:<feed>`` hash entity → the last clean value (MessagePack dict): lets a restarted
  or newly assigned worker recover duplicate detection and stale marking. Rebuildable from Kafka.
- ``<prefix>:streams:released:<tier>:<feed>`` hash source entity id → (observed_at, stale) of the last
  release to the tier, so a restarted worker keeps the per-entity throttle and drops replays.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis


class StateStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "shfeeds", timeout_s: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout_s = timeout_s

    def state_key(self, tier: str, feed: str) -> str:
        return f"{self.prefix}:state:{tier}:{feed}"

    def offsets_key(self, tier: str, feed: str) -> str:
        return f"{self.prefix}:state:{tier}:{feed}:offsets"

    def last_key(self, feed: str) -> str:
        return f"{self.prefix}:streams:last:{feed}"

    def released_key(self, tier: str, feed: str) -> str:
        return f"{self.prefix}:streams:released:{tier}:{feed}"

    async def write(
        self,
        tier_values: dict[tuple[str, str], dict[str, bytes]],
        tier_offsets: dict[tuple[str, str], dict[int, int]],
        last_values: dict[str, dict[str, bytes]],
        release_marks: dict[tuple[str, str], dict[str, bytes]] | None = None,
    ) -> None:
        """One round trip for a batch's state: tier snapshots with their offsets, and recovery state."""
        pipe = self.client.pipeline(transaction=True)
        queued = False
        for (tier, feed), values in tier_values.items():
            if values:
                pipe.hset(self.state_key(tier, feed), mapping=values)  # type: ignore[arg-type]
                queued = True
        for (tier, feed), offsets in tier_offsets.items():
            if offsets:
                pipe.hset(self.offsets_key(tier, feed), mapping=offsets)  # type: ignore[arg-type]
                queued = True
        for feed, values in last_values.items():
            if values:
                pipe.hset(self.last_key(feed), mapping=values)  # type: ignore[arg-type]
                queued = True
        for (tier, feed), marks in (release_marks or {}).items():
            if marks:
                pipe.hset(self.released_key(tier, feed), mapping=marks)  # type: ignore[arg-type]
                queued = True
        if queued:
            await asyncio.wait_for(pipe.execute(), self.timeout_s)

    async def load(self, key: str) -> dict[str, bytes]:
        raw: dict[Any, Any] = await asyncio.wait_for(self.client.hgetall(key), self.timeout_s)
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}
