"""API keys: stored in Redis only as their SHA-256, each with a tier, limits and (licensed) an agreement id."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from schemas import TIERS, now_ms

from .config import Naming, hash_api_key


class KeyError_(ValueError):
    """A key operation that cannot be done (unknown tier, missing agreement id, unknown key)."""


def key_id_of(key_hash: str) -> str:
    """The public handle of a key (never the key itself): the first 16 hex digits of its hash."""
    return key_hash[:16]


@dataclass(frozen=True)
class KeyInfo:
    key_hash: str
    tier: str
    agreement_id: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    revoked: bool = False
    created_at: int = 0
    label: str | None = None
    # From the key's agreement (agreements/): when it ends, where it may be used from, its daily messages.
    expires_at: int | None = None
    allow_ips: tuple[str, ...] = ()
    daily_quota: int | None = None
    feeds: tuple[str, ...] = ()  # a licensed agreement's source feeds (empty: every feed of the tier)

    @property
    def key_id(self) -> str:
        return key_id_of(self.key_hash)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_key_hash(key_hash: str, fields: dict[Any, Any]) -> KeyInfo | None:
    if not fields:
        return None
    data = {_text(k): _text(v) for k, v in fields.items()}
    tier = data.get("tier", "")
    if tier not in TIERS:
        return None
    try:
        limits = orjson.loads(data.get("limits") or "{}")
    except orjson.JSONDecodeError:
        limits = {}
    return KeyInfo(
        key_hash=key_hash,
        tier=tier,
        agreement_id=data.get("agreement_id") or None,
        limits=limits if isinstance(limits, dict) else {},
        revoked=data.get("revoked", "0") == "1",
        created_at=int(data.get("created_at") or 0),
        label=data.get("label") or None,
        expires_at=int(data["expires_at"]) if data.get("expires_at") else None,
        allow_ips=tuple(a for a in data.get("allow_ips", "").split(",") if a),
        daily_quota=int(data["daily_quota"]) if data.get("daily_quota") else None,
        feeds=tuple(f for f in data.get("feeds", "").split(",") if f),
    )


class KeyStore:
    def __init__(self, redis: aioredis.Redis, naming: Naming) -> None:
        self.redis = redis
        self.naming = naming

    async def issue(
        self,
        tier: str,
        *,
        agreement_id: str | None = None,
        limits: dict[str, Any] | None = None,
        label: str | None = None,
        expires_at: int | None = None,
        allow_ips: tuple[str, ...] = (),
        daily_quota: int | None = None,
        feeds: tuple[str, ...] = (),
    ) -> tuple[str, KeyInfo]:
        """A new key (returned once, in clear) and what is stored for it."""
        if tier not in TIERS:
            raise KeyError_(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}")
        if tier == "licensed" and not agreement_id:
            raise KeyError_("a licensed key needs the data-use agreement id (--agreement)")
        api_key = f"shk_{tier[:3]}_{secrets.token_urlsafe(24)}"
        info = KeyInfo(
            key_hash=hash_api_key(api_key),
            tier=tier,
            agreement_id=agreement_id,
            limits=limits or {},
            created_at=now_ms(),
            label=label,
            expires_at=expires_at,
            allow_ips=allow_ips,
            daily_quota=daily_quota,
            feeds=feeds,
        )
        mapping = {
            "tier": tier,
            "agreement_id": agreement_id or "",
            "limits": orjson.dumps(info.limits).decode(),
            "revoked": "0",
            "created_at": str(info.created_at),
            "label": label or "",
            "expires_at": str(expires_at or ""),
            "allow_ips": ",".join(allow_ips),
            "daily_quota": "" if daily_quota is None else str(daily_quota),
            "feeds": ",".join(feeds),
        }
        await self.redis.hset(self.naming.key_key(info.key_hash), mapping=mapping)  # type: ignore[misc,arg-type]
        return api_key, info

    async def lookup(self, api_key: str) -> KeyInfo | None:
        return await self.get(hash_api_key(api_key))

    async def get(self, key_hash: str) -> KeyInfo | None:
        fields = await self.redis.hgetall(self.naming.key_key(key_hash))  # type: ignore[misc,arg-type]
        return parse_key_hash(key_hash, fields)

    async def get_many(self, key_hashes: list[str]) -> dict[str, KeyInfo | None]:
        pipe = self.redis.pipeline(transaction=False)
        for key_hash in key_hashes:
            pipe.hgetall(self.naming.key_key(key_hash))
        results = await pipe.execute()
        return {h: parse_key_hash(h, f) for h, f in zip(key_hashes, results, strict=True)}

    async def resolve(self, key_or_id: str) -> KeyInfo:
        """A key given in clear, or by its key id (hash prefix) as ``keys list`` shows it."""
        info = await self.lookup(key_or_id)
        if info is not None:
            return info
        matches = [k for k in await self.list() if k.key_hash.startswith(key_or_id.lower())]
        if len(key_or_id) < 8 or len(matches) != 1:
            raise KeyError_(f"no single key matches {key_or_id!r}")
        return matches[0]

    async def revoke_hash(self, key_hash: str) -> None:
        await self.redis.hset(self.naming.key_key(key_hash), "revoked", "1")  # type: ignore[misc,arg-type]

    async def revoke(self, key_or_id: str) -> KeyInfo:
        info = await self.resolve(key_or_id)
        await self.redis.hset(self.naming.key_key(info.key_hash), "revoked", "1")  # type: ignore[misc,arg-type]
        return info

    async def set_tier(self, key_or_id: str, tier: str, agreement_id: str | None = None) -> KeyInfo:
        if tier not in TIERS:
            raise KeyError_(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}")
        info = await self.resolve(key_or_id)
        if tier == "licensed" and not (agreement_id or info.agreement_id):
            raise KeyError_("a licensed key needs the data-use agreement id (--agreement)")
        mapping = {"tier": tier}
        if agreement_id:
            mapping["agreement_id"] = agreement_id
        await self.redis.hset(self.naming.key_key(info.key_hash), mapping=mapping)  # type: ignore[misc,arg-type]
        refreshed = await self.get(info.key_hash)
        assert refreshed is not None
        return refreshed

    async def list(self) -> list[KeyInfo]:
        hashes: list[str] = []
        prefix = self.naming.key_key("")
        async for name in self.redis.scan_iter(match=self.naming.key_pattern(), count=500):
            hashes.append(_text(name)[len(prefix) :])
        if not hashes:
            return []
        found = await self.get_many(sorted(hashes))
        return [info for info in found.values() if info is not None]
