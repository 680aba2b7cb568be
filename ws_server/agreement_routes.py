"""The platform's own HTTP endpoints on the WebSocket port (docs/agreements.md): applying for a key and
claiming it, one's own usage, feedback reports, and the operator's view (an operator-tier key) of
agreements, usage and reports. The port's HTTP reader takes no request body, so POST parameters go in
the query string. Answers are JSON; errors are ``{"error": {"code", "message"}}`` like the feed queries'."""

from __future__ import annotations

import http
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson
import redis.asyncio as aioredis
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from agreements import feedback as fb
from agreements import model
from agreements.access import shanghai_day
from agreements.usage import to_csv
from catalog.metadata import load_metadata
from schemas import FEEDS, now_ms

if TYPE_CHECKING:
    from .server import Node

PREFIXES = ("/v1/agreements", "/v1/usage", "/v1/feedback", "/v1/operator/")
# Errors of these endpoints beyond the key's own refusals: code → (HTTP status, meaning).
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "a parameter is missing or not allowed here (the message says which)"),
    "forbidden": (403, "this endpoint needs an operator-tier key"),
    "not_found": (404, "no such request, agreement or report (or the token is not its)"),
    "conflict": (409, "the agreement or report is not in a state that allows this step"),
    "rate_limited": (429, "too many feedback reports from this IP address or key; retry later"),
    "key_store_unavailable": (503, "Redis cannot be read right now; retry later"),
}


def json_response(status: int, data: Any, content_type: str = "application/json") -> Response:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def error(code: str, message: str) -> Response:
    return json_response(ERRORS[code][0], {"error": {"code": code, "message": message}})


class PlatformRoutes:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.limiter = fb.ReportLimiter(node.policy.feedback_per_hour, node.policy.feedback_burst)
        self.owners = {feed: meta.publisher for feed, meta in load_metadata().feeds.items()}

    @staticmethod
    def matches(path: str) -> bool:
        return path.startswith(PREFIXES)

    async def respond(self, request: Request, ip: str) -> Response:
        split = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        parts = [p for p in split.path.split("/") if p][1:]  # without "v1"
        try:
            return await self._route(request, request.method, parts, query, ip)
        except model.AgreementError as err:
            code = "not_found" if "no agreement" in str(err) or "claim token" in str(err) else "conflict"
            return error(code if request.method == "GET" or code == "not_found" else "conflict", str(err))
        except fb.FeedbackError as err:
            return error("not_found" if str(err).startswith("no report") else "conflict", str(err))
        except (aioredis.RedisError, OSError):
            return error("key_store_unavailable", "Redis cannot be read right now")
        except (KeyError, ValueError) as err:
            return error("invalid_request", f"bad or missing parameter: {err}")

    async def _route(self, request: Request, method: str, parts: list[str], q: dict[str, str], ip: str) -> Response:
        store = self.node.agreements
        now = now_ms()
        if parts == ["agreements"] and method == "POST":
            return await self._apply(q, now)
        if len(parts) == 2 and parts[0] == "agreements" and method == "GET":
            agreement, key = await store.claim(parts[1], q.get("token", ""))
            return json_response(200, agreement.to_json(now) | {"key": key})
        if parts == ["feedback"] and method == "POST":
            return await self._report(request, q, ip, now)
        if len(parts) == 2 and parts[0] == "feedback" and method == "GET":
            return json_response(200, (await store.report(parts[1], q.get("token", ""))).to_json())
        auth = await self.node.authenticate(request, ip)
        if isinstance(auth, Response):
            return auth
        if parts == ["usage"] and method == "GET":
            if auth.key is None:
                return error("invalid_request", "usage is shown for the key the request carries")
            rows = await store.usage(q.get("day") or shanghai_day(now), auth.key.key_id)
            return self._rows(rows, q)
        if not parts or parts[0] != "operator" or auth.tier != "operator":
            return error("forbidden", "this endpoint needs an operator-tier key")
        actor = f"key:{auth.key.key_id}" if auth.key else "operator"
        rest = parts[1:]
        if rest == ["agreements"]:
            return json_response(200, [a.to_json(now) for a in await store.all_agreements()])
        if len(rest) == 2 and rest[0] == "agreements" and method == "GET":
            return json_response(200, (await store.get(rest[1])).to_json(now))
        if len(rest) == 3 and rest[0] == "agreements" and method == "POST":
            if rest[2] not in ("approve", "reject", "withdraw"):
                return error("invalid_request", "actions: approve, reject, withdraw")
            expires = int(q["expires_at"]) if "expires_at" in q else None
            done = await store.decide(rest[1], rest[2], actor, reason=q.get("reason", ""), expires_at=expires)
            return json_response(200, done.to_json(now))
        if rest == ["usage"]:
            rows = await store.usage(q.get("day") or shanghai_day(now), q.get("key"), q.get("agreement"))
            return self._rows(rows, q)
        if rest == ["feedback"]:
            found = await store.reports(feed=q.get("feed"), owner=q.get("owner"), status=q.get("status"))
            return json_response(200, [r.to_json() for r in found])
        if len(rest) == 2 and rest[0] == "feedback" and method == "POST":
            report = await store.answer_report(rest[1], q["status"], q.get("reply", ""), actor)
            return json_response(200, report.to_json())
        return error("not_found", "no such endpoint")

    async def _apply(self, q: dict[str, str], now: int) -> Response:
        try:
            agreement = model.apply(
                self.node.policy, tier=q["tier"], applicant=q.get("applicant", ""), purpose=q.get("purpose", ""),
                feeds=[f for f in q.get("feeds", "").split(",") if f], known_feeds=FEEDS,
                term_days=int(q["term_days"]) if "term_days" in q else None,
                allow_ips=[a for a in q.get("allow_ips", "").split(",") if a], now_ms=now,
            )  # fmt: skip
        except model.AgreementError as err:  # a bad application, not a state conflict
            return error("invalid_request", str(err))
        token = await self.node.agreements.submit(agreement)
        answer: dict[str, Any] = {"id": agreement.id, "state": agreement.state, "claim_token": token}
        if agreement.state == model.APPROVED:  # registered: the key at once
            _, answer["key"] = await self.node.agreements.claim(agreement.id, token)
        return json_response(201, answer)

    async def _report(self, request: Request, q: dict[str, str], ip: str, now: int) -> Response:
        feed = q.get("feed", "")
        if feed not in self.owners:
            return error("invalid_request", f"unknown feed {feed!r}")
        auth = await self.node.authenticate(request, ip)
        key = getattr(auth, "key", None)
        reporter = f"key:{key.key_id}" if key is not None else f"ip:{ip}"
        if not self.limiter.allow(reporter, now):
            return error("rate_limited", "too many reports; retry in a few minutes")
        try:
            report = fb.new_report(feed=feed, owner=self.owners[feed], entity_id=q.get("entity_id", ""),
                               problem=q.get("problem", ""), reporter=reporter, now_ms=now,
                               max_text=self.node.policy.feedback_max_text)  # fmt: skip
        except fb.FeedbackError as err:
            return error("invalid_request", str(err))
        token = await self.node.agreements.add_report(report)
        return json_response(201, {"id": report.id, "token": token, "status": report.status})

    @staticmethod
    def _rows(rows: list[dict[str, Any]], q: dict[str, str]) -> Response:
        if q.get("format") == "csv":
            return json_response(200, to_csv(rows).encode(), "text/csv; charset=utf-8")
        return json_response(200, rows)
