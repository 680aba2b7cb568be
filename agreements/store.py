"""Agreements, usage and feedback in Redis (names from ``schemas/naming.py``), around the I/O-free cores.
A key is made only when the applicant claims it with the token given at application, so no key is ever
stored in clear; withdrawing an agreement revokes its key through the key store, which is how open
connections learn it (the server's key watch)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis

from schemas import Naming, now_ms
from ws_server.keys import KeyStore

from . import feedback as fb
from . import model
from .access import shanghai_day
from .action_log import ActionLog
from .usage import METRICS


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AgreementStore:
    def __init__(self, redis: aioredis.Redis, naming: Naming, log: ActionLog | None) -> None:
        self.redis = redis
        self.naming = naming
        self.keys = KeyStore(redis, naming)
        self.log = log

    async def _log(self, action: str, actor: str, subject: str, **details: Any) -> None:
        if self.log is not None:
            await self.log.write(action, actor, subject, **details)

    # ------------------------------------------------------------------------------------------ agreements

    async def save(self, agreement: model.Agreement) -> None:
        body = orjson.dumps(agreement.to_json(0) | {"state": agreement.state})
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.naming.agreement_key(agreement.id), body)
        pipe.zadd(self.naming.agreements_index(), {agreement.id: agreement.created_at})
        await pipe.execute()

    async def get(self, agreement_id: str) -> model.Agreement:
        raw = await self.redis.get(self.naming.agreement_key(agreement_id))
        if raw is None:
            raise model.AgreementError(f"no agreement {agreement_id!r}")
        return model.from_json(orjson.loads(raw))

    async def all_agreements(self) -> list[model.Agreement]:
        ids = [_text(i) for i in await self.redis.zrange(self.naming.agreements_index(), 0, -1)]
        return [await self.get(i) for i in ids]

    async def submit(self, agreement: model.Agreement) -> str:
        """Store a new application; returns the claim token (shown once; only its hash is kept)."""
        token = secrets.token_urlsafe(24)
        await self.save(agreement)
        await self.redis.set(self.naming.claim_key(agreement.id), _sha(token))
        await self._log("apply", agreement.applicant, agreement.id, tier=agreement.tier, feeds=list(agreement.feeds))
        return token

    async def decide(self, agreement_id: str, action: str, actor: str, *, reason: str = "",
                     expires_at: int | None = None) -> model.Agreement:  # fmt: skip
        """approve / reject / withdraw, by an operator; logged before the answer."""
        current = await self.get(agreement_id)
        now = now_ms()
        if action == "approve":
            updated = model.approve(current, actor, now, reason=reason, expires_at=expires_at)
        elif action == "reject":
            updated = model.reject(current, actor, now, reason=reason)
        elif action == "withdraw":
            updated = model.withdraw(current, actor, now, reason=reason)
            if current.key_id:  # the key dies with its agreement; open connections close within seconds
                await self.keys.revoke_hash(await self._full_hash(current.key_id))
        else:
            raise model.AgreementError(f"unknown action {action!r}")
        await self.save(updated)
        await self._log(action, actor, agreement_id, reason=reason, expires_at=updated.expires_at)
        return updated

    async def _full_hash(self, key_id: str) -> str:
        info = await self.keys.resolve(key_id)
        return info.key_hash

    async def claim(self, agreement_id: str, token: str) -> tuple[model.Agreement, str | None]:
        """The applicant's view of its request, and its key the first time it is read once approved."""
        stored = await self.redis.get(self.naming.claim_key(agreement_id))
        if stored is None or not hmac.compare_digest(_text(stored), _sha(token)):
            raise model.AgreementError("unknown request id or wrong claim token")
        agreement = await self.get(agreement_id)
        if agreement.state_at(now_ms()) != model.APPROVED or agreement.key_id:
            return agreement, None
        # Claimed at most once, even by two requests at the same moment.
        if not await self.redis.set(self.naming.claim_key(agreement_id) + ":claimed", "1", nx=True):
            return agreement, None
        api_key, info = await self.keys.issue(
            agreement.tier,
            agreement_id=agreement.id,
            label=agreement.applicant,
            expires_at=agreement.expires_at,
            allow_ips=agreement.allow_ips,
            daily_quota=agreement.daily_quota,
            feeds=agreement.feeds if agreement.tier == "licensed" else (),
        )
        agreement = model.from_json(agreement.to_json(0) | {"state": agreement.state, "key_id": info.key_id})
        await self.save(agreement)
        return agreement, api_key

    # ------------------------------------------------------------------------------------------ usage

    async def add_usage(self, day: str, increments: dict[tuple[str, str, str], dict[str, int]]) -> dict[str, int]:
        """Add a ledger's drained increments to ``day``; returns each key's messages that day so far."""
        pipe = self.redis.pipeline(transaction=False)
        order: list[str] = []
        for (key_id, agreement_id, feed), counts in increments.items():
            name = self.naming.usage_key(day, key_id)
            for metric, value in counts.items():
                pipe.hincrby(name, f"{feed}|{metric}", value)
            if counts.get("messages"):  # every feed's together: what the daily quota counts
                pipe.hincrby(name, "total|messages", counts["messages"])
            if agreement_id:
                pipe.hset(name, "agreement", agreement_id)
            pipe.sadd(self.naming.usage_day_index(day), key_id)
            pipe.expire(name, 400 * 86400)
        for key_id in sorted({k for k, _a, _f in increments}):
            pipe.hincrby(self.naming.usage_key(day, key_id), "total|messages", 0)
            order.append(key_id)
        results = await pipe.execute() if increments else []
        return dict(zip(order, [int(r) for r in results[len(results) - len(order) :]], strict=True))

    async def messages_today(self, key_id: str, now: int) -> int:
        raw = await self.redis.hget(self.naming.usage_key(shanghai_day(now), key_id), "total|messages")  # type: ignore[misc]
        return int(raw or 0)

    async def usage(self, day: str, key_id: str | None = None, agreement_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``day`` (key, agreement, feed, metrics), for one key, one agreement, or all."""
        if key_id is not None:
            ids = [key_id]
        else:
            ids = sorted(_text(i) for i in await self.redis.smembers(self.naming.usage_day_index(day)))  # type: ignore[misc]
        rows: list[dict[str, Any]] = []
        for kid in ids:
            fields = {
                _text(k): _text(v) for k, v in (await self.redis.hgetall(self.naming.usage_key(day, kid))).items()
            }  # type: ignore[misc]
            agreement = fields.pop("agreement", "")
            if agreement_id is not None and agreement != agreement_id:
                continue
            by_feed: dict[str, dict[str, Any]] = {}
            for name, value in fields.items():
                feed, _, metric = name.partition("|")
                if feed == "total" or metric not in METRICS:
                    continue
                row = by_feed.setdefault(feed, {"day": day, "key_id": kid, "agreement_id": agreement, "feed": feed}
                                         | dict.fromkeys(METRICS, 0))  # fmt: skip
                row[metric] = int(value)
            rows += [by_feed[f] for f in sorted(by_feed)]
        return rows

    # ------------------------------------------------------------------------------------------ feedback

    async def add_report(self, report: fb.Report) -> str:
        token = secrets.token_urlsafe(18)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.naming.feedback_key(report.id), orjson.dumps(report.to_json()))
        pipe.set(self.naming.feedback_token_key(report.id), _sha(token))
        pipe.zadd(self.naming.feedback_index(), {report.id: report.created_at})
        await pipe.execute()
        return token

    async def report(self, report_id: str, token: str | None = None) -> fb.Report:
        """A report; with ``token``, only if it is the reporter's."""
        raw = await self.redis.get(self.naming.feedback_key(report_id))
        if raw is None:
            raise fb.FeedbackError(f"no report {report_id!r}")
        if token is not None:
            stored = await self.redis.get(self.naming.feedback_token_key(report_id))
            if stored is None or not hmac.compare_digest(_text(stored), _sha(token)):
                raise fb.FeedbackError(f"no report {report_id!r} with this token")
        return fb.Report(**orjson.loads(raw))

    async def reports(self, *, feed: str | None = None, owner: str | None = None,
                      status: str | None = None) -> list[fb.Report]:  # fmt: skip
        ids = [_text(i) for i in await self.redis.zrange(self.naming.feedback_index(), 0, -1)]
        out = [await self.report(i) for i in ids]
        return [
            r for r in out if (feed in (None, r.feed)) and (owner in (None, r.owner)) and (status in (None, r.status))
        ]

    async def answer_report(self, report_id: str, status: str, reply: str, actor: str) -> fb.Report:
        updated = fb.set_status(await self.report(report_id), status, reply, actor, now_ms())
        await self.redis.set(self.naming.feedback_key(report_id), orjson.dumps(updated.to_json()))
        await self._log("feedback_" + status, actor, report_id, reply=reply)
        return updated
