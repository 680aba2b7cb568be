"""The state store's hand-packed HSET: the same bytes on the wire as the Redis client library would send,
and a snapshot given as tier records leaves the newest value per entity, as a dict of them would."""

from __future__ import annotations

from itertools import chain
from typing import Any, cast

import pytest
from hiredis import pack_command

from streams.io.state_store import _pack_hset


def library_packing(key: str, mapping: dict[Any, Any]) -> bytes:
    return pack_command((b"HSET", key, *chain.from_iterable(mapping.items())))


@pytest.mark.parametrize(
    "mapping",
    [
        {b"bus-1": b"\x81\xa2id\xa5bus-1", b"bus-2": b""},  # tier snapshots: entity key bytes → value bytes
        {"bus-1": b"v", "沪A-7": b"\xff\x00"},  # recovery state: entity ids as str
        {0: 1200, 3: 7},  # partition → offset
        {"ü": "ö", b"k": 5},  # mixed
        {b"x": 1.5},  # a type the fast paths do not cover
    ],
)
def test_packing_is_byte_for_byte_what_the_client_library_sends(mapping: dict[Any, Any]) -> None:
    assert _pack_hset("sh:state:public:bus", mapping) == library_packing("sh:state:public:bus", mapping)


def test_tier_records_pack_as_their_key_value_pairs_in_order() -> None:
    rows = [(b"bus-1", b"old", 1), (b"bus-2", b"b", 2), (b"bus-1", b"new", 3)]
    expected = pack_command(cast(Any, (b"HSET", "k", b"bus-1", b"old", b"bus-2", b"b", b"bus-1", b"new")))
    assert _pack_hset("k", rows) == expected


@pytest.mark.stack
async def test_a_snapshot_of_tier_records_keeps_each_entitys_newest_value(redis_url: str, unique_name: Any) -> None:
    import redis.asyncio as aioredis

    from schemas import Naming
    from streams.io.state_store import StateStore

    client = aioredis.Redis.from_url(redis_url)
    store = StateStore(client, Naming(redis_prefix=unique_name("r")))
    rows = [(b"bus-1", b"first", 10), (b"bus-2", b"only", 11), (b"bus-1", b"second", 12)]
    try:
        await store.write({("public", "bus"): rows}, {("public", "bus"): {0: 3}}, {"bus": {"bus-1": b"clean"}})
        assert await store.load(store.naming.state_key("public", "bus")) == {"bus-1": b"second", "bus-2": b"only"}
        assert await store.load(store.naming.offsets_key("public", "bus")) == {"0": b"3"}
        assert await store.load(store.naming.last_key("bus")) == {"bus-1": b"clean"}
    finally:
        keys = [store.naming.state_key("public", "bus"), store.naming.offsets_key("public", "bus")]
        await client.delete(*keys, store.naming.last_key("bus"))
        await client.aclose()
