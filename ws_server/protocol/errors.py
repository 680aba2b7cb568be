"""Error codes and WebSocket close codes of protocol v1 (documented in docs/protocol.md)."""

from __future__ import annotations

# Error codes sent in {"type": "error", "code": ...}. The connection stays open after each of these.
BAD_ENCODING = "bad_encoding"  # not JSON / MessagePack, or not an object
INVALID_MESSAGE = "invalid_message"  # a field is missing, unknown or of the wrong type / range
UNKNOWN_FEED = "unknown_feed"
INVALID_FILTER = "invalid_filter"  # bad geometry, unknown district, too many vertices or ids
CRS_NOT_ALLOWED = "crs_not_allowed"  # the tier may not ask for this coordinate system
DUPLICATE_ID = "duplicate_id"  # a subscription with this id is already open on the connection
UNKNOWN_SUBSCRIPTION = "unknown_subscription"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
TOO_MANY_STREAMS = "too_many_streams"  # this IP / key keeps too many distinct streams alive on the node
RATE_LIMITED = "rate_limited"  # the message was dropped; see the quota message that follows
FEED_UNAVAILABLE = "feed_unavailable"  # the node cannot read the feed right now (Kafka/Redis down)
GEOMETRY_BUDGET = "geometry_budget_exceeded"  # too many polygon vertices validated this minute (IP / key)
FEED_NOT_LICENSED = "feed_not_licensed"  # the key's agreement does not name this source feed
QUOTA_EXCEEDED = "quota_exceeded"  # the key's daily messages are used up (agreements/); the connection closes
INTERNAL_ERROR = "internal_error"  # the server failed on this message (a bug, logged); nothing changed

ERROR_CODES: dict[str, str] = {
    BAD_ENCODING: "the frame is not a JSON (or MessagePack) object",
    INVALID_MESSAGE: "a field is missing, unknown, or has the wrong type or range",
    UNKNOWN_FEED: "no such feed",
    INVALID_FILTER: "the filter is malformed, too large, or names an unknown district",
    CRS_NOT_ALLOWED: "the access tier may not receive this coordinate system",
    DUPLICATE_ID: "a subscription with this id is already open",
    UNKNOWN_SUBSCRIPTION: "no open subscription has this id",
    TOO_MANY_SUBSCRIPTIONS: "the connection holds the most subscriptions its tier allows",
    TOO_MANY_STREAMS: "this IP address or key keeps the most distinct streams its tier allows on the node",
    RATE_LIMITED: "too many messages; this one was dropped",
    FEED_UNAVAILABLE: "the feed cannot be read right now; retry later",
    GEOMETRY_BUDGET: "this IP address or key validated the most polygon vertices its tier allows a minute",
    FEED_NOT_LICENSED: "the key's data-use agreement does not name this feed",
    QUOTA_EXCEEDED: "the key delivered its daily message quota (a Shanghai day); the connection closes with 4031",
    INTERNAL_ERROR: "the server could not handle this message; it was logged, and the connection stays open",
}

# WebSocket close codes (RFC 6455 private range 4000-4999 for ours).
CLOSE_UNAUTHORIZED = 4001  # key unknown or revoked (also applied to open connections)
CLOSE_TIER_CHANGED = 4002  # not used for downgrades (those re-subscribe in place); reserved
CLOSE_SLOW = 4008  # the client could not keep up even with conflation: reconnect and resume
CLOSE_FLOOD = 4029  # kept flooding after rate_limited errors
CLOSE_TOO_MANY_CONNECTIONS = 4030  # per-IP or per-key connection cap
CLOSE_QUOTA = 4031  # the key's daily message quota is used up; retry the next Shanghai day
CLOSE_MESSAGE_TOO_BIG = 1009  # RFC 6455: frame above the size limit (sent by the websockets library)

CLOSE_CODES: dict[int, str] = {
    CLOSE_UNAUTHORIZED: "unauthorized: the API key is unknown or was revoked",
    CLOSE_SLOW: "slow: the client did not read fast enough; reconnect and resume",
    CLOSE_FLOOD: "flood: too many messages after being rate limited",
    CLOSE_TOO_MANY_CONNECTIONS: "too many connections for this IP address or key",
    CLOSE_QUOTA: "quota: the key's daily message quota is used up",
    CLOSE_MESSAGE_TOO_BIG: "message too big",
}


class ProtocolError(Exception):
    """A client mistake answered with an ``error`` message; the connection stays open."""

    def __init__(self, code: str, message: str, sub_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.sub_id = sub_id
