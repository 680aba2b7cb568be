"""The publishing lease: the rule without I/O, then two holders contending on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis import asyncio as aioredis

from control_plane.lease import LeaseDecision, RedisLease, due


def test_the_faust_leader_takes_a_free_lease_at_once_a_standby_after_patience() -> None:
    leader, standby = LeaseDecision(patience=2), LeaseDecision(patience=2)
    assert leader.may_take(faust_leader=True)
    assert not standby.may_take(faust_leader=False)
    standby.saw(-1)
    assert standby.may_take(faust_leader=False)
    standby.saw(0)  # someone took it meanwhile: patience starts over
    assert not standby.may_take(faust_leader=False)


def test_publication_is_due_once_an_interval_has_passed_whoever_published() -> None:
    assert due(10_000, None, 5_000) and due(10_000, 5_000, 5_000) and not due(10_000, 6_000, 5_000)


@pytest.mark.stack
async def test_one_holder_and_a_standby_takes_over_after_the_ttl(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    key = unique_name("lease")
    try:
        a = RedisLease(redis, key, "a", ttl_s=0.6)
        b = RedisLease(redis, key, "b", ttl_s=0.6)
        assert await a.check(faust_leader=True)
        assert not await b.check(faust_leader=True)  # held: even the Faust leader waits
        assert await a.check(faust_leader=False)  # renewing needs no leadership
        # a dies (stops renewing): b sees the lease free, then takes it on its next check.
        await asyncio.sleep(0.8)
        assert not await b.check(faust_leader=False)
        assert await b.check(faust_leader=False)
        assert not await a.check(faust_leader=True)  # a, back from a stall, does not publish beside b
        await b.release()
        assert await a.check(faust_leader=True)
    finally:
        await redis.delete(key)
        await redis.aclose()
