"""Latest state per tier in Redis (docs/contracts.md) and the stream workers' own recovery state. The key
names are spelled in ``schemas/naming.py``; what each key holds:

- ``<prefix>:state:<tier>:<feed>`` hash entity → tier value bytes, and ``...:offsets`` hash partition →
  next tier-topic offset the snapshot covers; both written in one MULTI so a reader never sees values
  without their offsets. An entity whose last tier record is a removal marker is deleted from the hash.
- ``<prefix>:streams:last:<feed>`` hash entity → the last clean value (MessagePack dict): lets a restarted
  or newly assigned worker recover duplicate detection and stale marking. Rebuildable from Kafka. An
  ended entity (``ENDING_FEEDS`` in ``streams/logic/cleaning.py``) is deleted here, and from the next key.
- ``<prefix>:streams:released:<tier>:<feed>`` hash source entity id → (observed_at, stale) of the last
  release to a throttled tier, so a restarted worker keeps the per-entity throttle.
- ``<prefix>:streams:forwarded:<tier>:<feed>`` hash partition → next ``pending.<tier>.<feed>`` offset not yet
  forwarded, written with the tier snapshot, so a delay stage never forwards a record twice.
- ``<prefix>:streams:windows:<tier>:<feed>`` hash group key → end of the newest window released for it, for
  tiers whose view needs whole windows (streams/logic/windows.py), and ``...:decided:<tier>:<feed>`` hash
  partition → pending offset below which every record was read when windows were last released: with
  them a restarted worker tells a replayed record from a late one.
- ``<prefix>:streams:agghist:scenic`` hash scenic area → MessagePack list of (time, count) samples of the
  last ~20 minutes, so the 15-minute trend survives a restart or a move to another worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, cast

import redis.asyncio as aioredis
from hiredis import pack_command

from schemas import Naming

# A tier snapshot's fields: a mapping entity key → value, or the tier records themselves, (key, value,
# timestamp) rows in offset order. HSET sets its field-value pairs in the order given, so the last row per
# key wins, as in a dict, without building one per batch.
Snapshot = Mapping[Any, bytes] | Sequence[tuple[bytes, bytes, int]]


class StateStore:
    def __init__(self, client: aioredis.Redis, naming: Naming, timeout_s: float = 5.0) -> None:
        self.client = client
        self.naming = naming  # every key name below comes from it (schemas/naming.py)
        self.timeout_s = timeout_s

    async def put(self, key: str, mapping: dict[str, bytes]) -> None:
        if mapping:
            await asyncio.wait_for(self.client.hset(key, mapping=mapping), self.timeout_s)  # type: ignore[arg-type]

    async def write(
        self,
        tier_values: Mapping[tuple[str, str], Snapshot],
        tier_offsets: dict[tuple[str, str], dict[int, int]],
        last_values: dict[str, dict[str, bytes]],
        release_marks: dict[tuple[str, str], dict[str, bytes]] | None = None,
        forwarded: dict[tuple[str, str], dict[int, int]] | None = None,
        windows: dict[tuple[str, str], dict[bytes, bytes]] | None = None,
        decided: dict[tuple[str, str], dict[int, int]] | None = None,
        forget: dict[str, list[str]] | None = None,
        forget_marks: dict[tuple[str, str], list[str]] | None = None,
        removed: Mapping[tuple[str, str], Sequence[bytes]] | None = None,
    ) -> None:
        """One round trip for a batch's state: tier snapshots with their offsets, and recovery state.

        ``removed``: per tier snapshot, the keys of entities gone (deleted after the values are set, so a
        batch's removal marker does not stay behind); ``forget`` and ``forget_marks``: ended entities whose
        recovery state and release marks go."""
        commands: list[tuple[str, Snapshot | Mapping[Any, Any]]] = []
        for (tier, feed), values in tier_values.items():
            commands.append((self.naming.state_key(tier, feed), values))
        for (tier, feed), offsets in tier_offsets.items():
            commands.append((self.naming.offsets_key(tier, feed), offsets))
        for feed, values in last_values.items():
            commands.append((self.naming.last_key(feed), values))
        for (tier, feed), marks in (release_marks or {}).items():
            commands.append((self.naming.released_key(tier, feed), marks))
        for (tier, feed), ends in (forwarded or {}).items():
            commands.append((self.naming.forwarded_key(tier, feed), ends))
        for (tier, feed), released in (windows or {}).items():
            commands.append((self.naming.windows_key(tier, feed), released))
        for (tier, feed), offsets in (decided or {}).items():
            commands.append((self.naming.decided_key(tier, feed), offsets))
        packed = [_pack_hset(key, mapping) for key, mapping in commands if mapping]
        deletes: list[tuple[str, Sequence[str | bytes]]] = []
        deletes += [(self.naming.state_key(tier, feed), keys) for (tier, feed), keys in (removed or {}).items()]
        deletes += [(self.naming.last_key(feed), entities) for feed, entities in (forget or {}).items()]
        deletes += [
            (self.naming.released_key(tier, feed), entities) for (tier, feed), entities in (forget_marks or {}).items()
        ]
        packed += [_pack_hdel(key, fields) for key, fields in deletes if fields]
        if packed:
            await asyncio.wait_for(self._transaction(packed), self.timeout_s)

    async def _transaction(self, commands: list[bytes]) -> None:
        """HSETs in one MULTI/EXEC, packed here: redis-py's generic packer costs ~2 µs per argument, which
        was a quarter of the worker's CPU at 7 fields per record."""
        payload = [_MULTI, *commands, _EXEC]
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join(payload), check_health=False)
            for _ in range(len(commands) + 1):
                await conn.read_response()  # +OK for MULTI, +QUEUED per command; errors raise
            result = await conn.read_response()
            if result is None:
                raise ConnectionError("Redis aborted the state transaction")
            for reply in result:
                if isinstance(reply, Exception):
                    raise reply
        except BaseException:
            # Replies may be left unread on this connection: never hand it out again.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def load(self, key: str) -> dict[str, bytes]:
        raw: dict[Any, Any] = await asyncio.wait_for(self.client.hgetall(key), self.timeout_s)
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _pack_hdel(key: str, fields: Sequence[str | bytes]) -> bytes:
    # hiredis's stub types the argument as a one-element tuple; any number of arguments is accepted.
    return pack_command(cast(Any, (b"HDEL", key, *fields)))


_PAIR = b"$%d\r\n%s\r\n$%d\r\n%s\r\n"  # one field and its value, as Redis bulk strings


def _as_bytes(arg: Any) -> bytes:
    """A field or value as Redis sees it: as redis-py and hiredis encode str and int."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    raise TypeError(f"no Redis encoding for {type(arg).__name__}")


def _pack_hset(key: str, fields: Snapshot | Mapping[Any, Any]) -> bytes:
    """HSET key field value [field value ...] in the Redis protocol. This runs per record and tier, so the
    common case (bytes fields and values) is one bytes formatting per pair: ~0.2 µs a field, against ~0.7 µs
    for hiredis's ``pack_command``, which copies each argument twice. Other types are encoded first."""
    try:
        if isinstance(fields, Mapping):
            body = [_PAIR % (len(k), k, len(v), v) for k, v in fields.items()]
        else:
            body = [_PAIR % (len(k), k, len(v), v) for k, v, _ in fields]
    except TypeError:  # a str or int among them (entity ids, partitions, offsets)
        pairs: Iterable[tuple[Any, Any]] = fields.items() if isinstance(fields, Mapping) else [r[:2] for r in fields]
        try:
            # entity ids as str (the recovery state), the next most common case
            body = [_PAIR % (len(b), b, len(v), v) for k, v in pairs for b in (k.encode(),)]
        except (TypeError, AttributeError):
            try:
                encoded = [(_as_bytes(k), _as_bytes(v)) for k, v in pairs]
            except TypeError:
                return pack_command((b"HSET", key, *chain.from_iterable(pairs)))
            body = [_PAIR % (len(k), k, len(v), v) for k, v in encoded]
    name = key.encode()
    return b"".join([b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (2 + 2 * len(body), len(name), name), *body])
