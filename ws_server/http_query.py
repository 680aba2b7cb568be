"""``GET /v1/feeds/{feed}``: the current state of a feed over plain HTTP, as a WebSocket client of the same
tier would hold it after its snapshot.

A query is a subscription that lasts one request. It goes through the WebSocket side's own code: the key
gives the tier (``Node.authenticate``), a ``Session`` of the caller checks the feed and the coordinate
system and compiles the filter, the hub gives the stream of that (tier, feed, filter) (shared with any
WebSocket subscriber of the same filter), and the page holds the stream's entities as the snapshot encodes
them. Each caller (IP address, or key) keeps one session across requests: every request is one message for
its rate limit, its streams count against its cap, and a licensed caller's pages are audited like the
frames of a licensed connection.

Paging is by entity id: a page holds ``limit`` entities in id order after the cursor (the last id of the
previous page, opaque to clients), so an entity present throughout is visited exactly once.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import http
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from schemas import now_ms

from .feed_reader import FeedUnavailable
from .http_cache import conditional_response
from .protocol.codec import CODECS, JSON
from .protocol.errors import (
    CRS_NOT_ALLOWED,
    FEED_NOT_LICENSED,
    FEED_UNAVAILABLE,
    INVALID_FILTER,
    INVALID_MESSAGE,
    RATE_LIMITED,
    TOO_MANY_STREAMS,
    UNKNOWN_FEED,
)
from .protocol.messages import Crs, Filter, Options, Subscribe
from .protocol.session import Session

if TYPE_CHECKING:
    from .server import Node

QUERY_PREFIX = "/v1/feeds/"
DEFAULT_LIMIT = 500
MAX_LIMIT = 2000
SESSION_IDLE_MS = 300_000  # a caller's session is forgotten this long after its last request
_SUB_ID = "http"
_JSON = CODECS[JSON]

# Errors of this endpoint: code → (HTTP status, meaning). Documented in docs/http.md and /openapi.json.
INVALID_PARAMETER = "invalid_parameter"
INVALID_CURSOR = "invalid_cursor"
UNAUTHORIZED = "unauthorized"
TOO_MANY_CONNECTIONS = "too_many_connections"
KEY_STORE_UNAVAILABLE = "key_store_unavailable"
IP_NOT_ALLOWED = "ip_not_allowed"
QUOTA_EXCEEDED = "quota_exceeded"
AGREEMENT_EXPIRED = "agreement_expired"
ERRORS: dict[str, tuple[int, str]] = {
    INVALID_PARAMETER: (400, "an unknown, repeated or malformed query parameter (limit, crs, ...)"),
    INVALID_FILTER: (400, "a malformed filter: bad bbox or near, unknown district, too many ids or routes"),
    INVALID_CURSOR: (400, "the cursor is not one this endpoint gave"),
    UNAUTHORIZED: (401, "the API key is unknown or was revoked"),
    AGREEMENT_EXPIRED: (401, "the key's data-use agreement has expired (docs/agreements.md)"),
    IP_NOT_ALLOWED: (403, "the key's agreement does not allow this IP address (its allow-list)"),
    QUOTA_EXCEEDED: (429, "the key delivered its daily message quota (per Shanghai day)"),
    CRS_NOT_ALLOWED: (403, "the key's tier may not receive this coordinate system"),
    FEED_NOT_LICENSED: (403, "the key's data-use agreement does not name this feed"),
    UNKNOWN_FEED: (404, "no such feed"),
    RATE_LIMITED: (429, "too many requests for this IP address or key; retry after Retry-After seconds"),
    TOO_MANY_STREAMS: (429, "this IP address or key keeps the most distinct filters its tier allows"),
    TOO_MANY_CONNECTIONS: (429, "this IP address or key holds the most WebSocket connections its tier allows"),
    FEED_UNAVAILABLE: (503, "the feed cannot be read right now; retry later"),
    KEY_STORE_UNAVAILABLE: (503, "the key store cannot be read right now; retry later"),
}
_AUTH_STATUS = {401: UNAUTHORIZED, 429: TOO_MANY_CONNECTIONS, 503: KEY_STORE_UNAVAILABLE}
# Every filter field of the WebSocket's ``Filter`` but the geometric ones is a comma-separated list here, so a
# field added there (a stop list, say) is a query parameter too. A polygon does not fit a query string.
POINT_PARAMS = ("bbox", "near")
LIST_PARAMS = tuple(f for f in Filter.__struct_fields__ if f not in (*POINT_PARAMS, "polygon"))
PARAMS = frozenset({*POINT_PARAMS, *LIST_PARAMS, "crs", "limit", "cursor", "key"})


class QueryError(Exception):
    def __init__(self, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or []


def error_response(err: QueryError) -> Response:
    status = ERRORS.get(err.code, (500, ""))[0]
    body = orjson.dumps({"error": {"code": err.code, "message": err.message}})
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    for name, value in err.headers:
        headers[name] = value
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


@dataclass(frozen=True)
class Query:
    filter: Filter
    crs: Crs
    limit: int
    after: str | None  # the last id of the previous page


def encode_cursor(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError(INVALID_CURSOR, "cursor is not one this endpoint gave") from None


def _numbers(name: str, text: str, count: int) -> list[float]:
    parts = text.split(",")
    if len(parts) != count:
        raise QueryError(INVALID_FILTER, f"{name} takes {count} comma-separated numbers, got {len(parts)}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise QueryError(INVALID_FILTER, f"{name} takes numbers: {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise QueryError(INVALID_FILTER, f"{name} takes finite numbers: {text!r}")
    return values


def parse_query(query: str) -> Query:
    """The filter, coordinate system and page a query string asks for (raises ``QueryError``)."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=32)
    except ValueError as err:
        raise QueryError(INVALID_PARAMETER, str(err)) from None
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise QueryError(
            INVALID_PARAMETER, f"unknown parameter {unknown[0]!r}; parameters: {', '.join(sorted(PARAMS))}"
        )
    for name, values in params.items():
        if len(values) > 1:
            raise QueryError(INVALID_PARAMETER, f"parameter {name!r} is given {len(values)} times")
    one = {name: values[0] for name, values in params.items()}
    spec: dict[str, Any] = {}
    if "bbox" in one:
        spec["bbox"] = _numbers("bbox", one["bbox"], 4)
    if "near" in one:
        lng, lat, radius = _numbers("near", one["near"], 3)
        spec["near"] = {"lng": lng, "lat": lat, "radius_m": radius}
    for name in LIST_PARAMS:
        if name in one:
            items = [item.strip() for item in one[name].split(",")]
            if not all(items):
                raise QueryError(INVALID_FILTER, f"{name} is a comma-separated list without empty items")
            spec[name] = items[0] if name == "district" and len(items) == 1 else items
    try:
        flt = msgspec.convert(spec, Filter)
    except msgspec.ValidationError as err:
        raise QueryError(INVALID_FILTER, str(err).replace("`$.", "`")) from None
    given = one.get("crs", "gcj02")
    crs: Crs = "wgs84" if given == "wgs84" else "gcj02"
    if given != crs:
        raise QueryError(INVALID_PARAMETER, f"crs is gcj02 or wgs84, not {given!r}")
    try:
        limit = int(one.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise QueryError(INVALID_PARAMETER, f"limit is a whole number from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(INVALID_PARAMETER, f"limit is a whole number from 1 to {MAX_LIMIT}, not {limit}")
    after = decode_cursor(one["cursor"]) if one.get("cursor") else None
    return Query(flt, crs, limit, after)


class _Replies:
    """The sink of a query's session: the control messages it answers (subscribed, or an error)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, frame: bytes) -> None:
        self.messages.append(orjson.loads(frame))

    def send_many(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.send(frame)

    def backlog(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass

    def take_error(self) -> QueryError | None:
        errors = [m for m in self.messages if m.get("type") == "error"]
        self.messages.clear()
        if not errors:
            return None
        code = str(errors[0]["code"])
        return QueryError(INVALID_FILTER if code == INVALID_MESSAGE else code, str(errors[0]["message"]))


@dataclass
class _Caller:
    session: Session
    replies: _Replies
    last_ms: int


class FeedQueries:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._callers: dict[tuple[str, str, str | None], _Caller] = {}

    @staticmethod
    def matches(path: str) -> bool:
        feed = path.removeprefix(QUERY_PREFIX)
        return path.startswith(QUERY_PREFIX) and bool(feed) and "/" not in feed

    async def respond(self, conn: ServerConnection, request: Request) -> Response:
        try:
            return await self._respond(conn, request)
        except QueryError as err:
            return error_response(err)

    async def _respond(self, conn: ServerConnection, request: Request) -> Response:
        split = urlsplit(request.path)
        feed = split.path.removeprefix(QUERY_PREFIX)
        ip = str(conn.remote_address[0]) if conn.remote_address else "?"
        auth = await self.node.authenticate(request, ip)
        if isinstance(auth, Response):  # the WebSocket handshake's refusal, as this endpoint's JSON error
            code = auth.headers.get("X-Shfeeds-Error") or _AUTH_STATUS.get(auth.status_code, UNAUTHORIZED)
            raise QueryError(code, (auth.body or b"").decode(errors="replace").strip())
        now = now_ms()
        caller = self._caller(auth, now)
        session = caller.session
        if not session.bucket.take(now):
            wait_s = max(1, math.ceil((1.0 - session.bucket.tokens) / (session.bucket.rate * 1000)))
            raise QueryError(
                RATE_LIMITED,
                f"at most {session.limits.messages_per_s:g} requests a second (burst {session.limits.burst})",
                [("Retry-After", str(wait_s))],
            )
        query = parse_query(split.query)
        message = Subscribe(_SUB_ID, feed, query.filter, Options(snapshot=False, crs=query.crs))
        needs = session.needs(message)
        if needs is None:
            raise caller.replies.take_error() or QueryError(INVALID_PARAMETER, "refused")
        try:
            for need in needs:
                await self.node.readers.ensure(need.tier, need.feed)
        except FeedUnavailable as err:
            raise QueryError(FEED_UNAVAILABLE, str(err)) from None
        # From here to the end no await: the stream and the state do not move under the page.
        try:
            session.apply(message, now_ms())
            error = caller.replies.take_error()
            if error is not None:
                raise error
            stream = session.subs[_SUB_ID].stream
            entries = stream.source.entries
            ids = sorted(i for i in stream.inside if i in entries)
            start = bisect.bisect_right(ids, query.after) if query.after is not None else 0
            page = ids[start : start + query.limit]
            more = start + len(page) < len(ids)
            head = {
                "feed": feed,
                "tier": session.tier,
                "crs": stream.crs,
                "total": len(ids),
                "count": len(page),
                "next_cursor": encode_cursor(page[-1]) if more and page else None,
            }
            records = [entries[i].encoded(_JSON, stream.crs) for i in page]
            body = _JSON.records(head, records)
            response = conditional_response(
                request,
                body,
                "application/json",
                headers=[("X-Shfeeds-Tier", session.tier), ("Cache-Control", "no-cache")],
            )
            if response.status_code == 200 and request.method == "GET":
                session.delivered(stream, body, len(records))  # counted, and audited for licensed keys
            return response
        finally:
            session.release_all()
            caller.replies.messages.clear()

    def sessions(self) -> list[Session]:
        return [caller.session for caller in self._callers.values()]

    def _caller(self, auth: Any, now: int) -> _Caller:
        key = auth.key
        principal = f"key:{key.key_hash}" if key is not None else f"ip:{auth.ip}"
        ident = (principal, auth.tier, key.agreement_id if key is not None else None)
        caller = self._callers.get(ident)
        if caller is None:
            self._forget_idle(now)
            replies = _Replies()
            session = Session(
                self.node.hub,
                replies,
                _JSON,
                tier=auth.tier,
                limits=auth.limits,
                now_ms=now,
                key_id=key.key_hash if key is not None else None,
                agreement_id=key.agreement_id if key is not None else None,
                principal=principal,
            )
            if key is not None and key.feeds:
                session.feeds = frozenset(key.feeds)
            if auth.tier == "licensed":
                session.on_delivered = self.node.audit.recorder(session, auth.ip)
            caller = self._callers[ident] = _Caller(session, replies, now)
        caller.last_ms = now
        return caller

    def _forget_idle(self, now: int) -> None:
        # Kept well beyond an audit window: the audit batches by session, so a session must outlive its batch.
        for ident, caller in list(self._callers.items()):
            if now - caller.last_ms > SESSION_IDLE_MS:
                del self._callers[ident]
