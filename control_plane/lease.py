"""Which control-plane worker publishes the aggregate feeds: the holder of a short lease in Redis.

Faust's leader election alone hands over only when the consumer group notices the dead member: a
session timeout the broker will not let go under ``group.min.session.timeout.ms`` (6 s by default),
then a rebalance; measured 11–15 s from a kill -9 to the next aggregates, more than one 5 s interval.
A lease of ``ttl_s`` renewed every ``check_s`` by its holder is noticed free within ``ttl_s`` of the
holder's death, so a standby worker takes over in a few seconds.

Faust's leadership still decides who takes a free lease first: the group's leader takes it at once, any
other worker only after seeing it free on ``patience`` consecutive checks. So two healthy workers
settle on the Faust leader, and a survivor takes over without waiting for the rebalance.

``LeaseDecision`` is the rule, without I/O; ``RedisLease`` applies it with one atomic script call per
check. A holder stalled longer than ``ttl_s`` loses the lease and stops publishing on its next check; one
tick in flight while that happens may publish an aggregate snapshot twice, which subscribers take as a
refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Renew when ours; take when free and allowed. Returns 1 when this worker holds the lease afterwards.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder and ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if not holder then return -1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class LeaseDecision:
    """Whether this worker may take a free lease on this check."""

    patience: int = 2  # checks a non-leader sees the lease free before it takes it
    free_seen: int = 0

    def may_take(self, faust_leader: bool) -> bool:
        return faust_leader or self.free_seen + 1 >= self.patience

    def saw(self, outcome: int) -> None:
        """``outcome`` of a check: 1 held, 0 held by another, -1 free and not taken."""
        self.free_seen = self.free_seen + 1 if outcome == -1 else 0


def due(now_ms: int, published_ms: int | None, interval_ms: int) -> bool:
    """A holder publishes when one interval has passed since the last publication, by whichever worker."""
    return published_ms is None or now_ms - published_ms >= interval_ms


class RedisLease:
    def __init__(self, redis: Any, key: str, me: str, ttl_s: float = 2.5, patience: int = 2) -> None:
        self.redis = redis
        self.key = key
        self.me = me
        self.ttl_ms = int(ttl_s * 1000)
        self.decision = LeaseDecision(patience)
        self.held = False

    async def check(self, faust_leader: bool) -> bool:
        """Renew or take the lease; True while this worker holds it."""
        take = "1" if self.decision.may_take(faust_leader) else "0"
        outcome = int(await self.redis.eval(_HOLD, 1, self.key, self.me, str(self.ttl_ms), take))
        self.decision.saw(outcome)
        self.held = outcome == 1
        return self.held

    async def release(self) -> None:
        """On a clean stop, so a standby takes over on its next check instead of after the TTL."""
        await self.redis.eval(_RELEASE, 1, self.key, self.me)
        self.held = False
