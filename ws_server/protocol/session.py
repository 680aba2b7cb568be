"""One client connection as a sans-I/O state machine: messages in, frames out through a ``Sink``.

The I/O layer owns the socket; this module decides what every message means, what to answer, when to
rate-limit, how a slow connection is served (conflated catch-up, then the "slow" close code) and what a
tier change does to open subscriptions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from schemas import FEEDS, is_client_feed, unknown_feed_message

from .codec import Codec
from .errors import (
    CLOSE_FLOOD,
    CLOSE_SLOW,
    CRS_NOT_ALLOWED,
    DUPLICATE_ID,
    FEED_NOT_LICENSED,
    FEED_UNAVAILABLE,
    RATE_LIMITED,
    TOO_MANY_SUBSCRIPTIONS,
    UNKNOWN_FEED,
    UNKNOWN_SUBSCRIPTION,
    ProtocolError,
)
from .filters import CompiledFilter
from .limits import CRS_BY_TIER, Limits, TokenBucket
from .messages import ClientMessage, Filter, Options, Ping, Subscribe, Unsubscribe, Update, decode_client_message
from .stream import parse_position

if TYPE_CHECKING:
    from .hub import Hub
    from .stream import Stream


class Sink(Protocol):
    """Where a session's frames go: a WebSocket connection, or a list in tests."""

    def send(self, frame: bytes) -> None: ...

    def send_many(self, frames: list[bytes]) -> None:
        """``send`` each frame, in order (in one write where the transport allows)."""
        ...

    def backlog(self) -> int:
        """Bytes written but not yet taken by the peer."""
        ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True)
class FeedNeed:
    """What the I/O layer must make ready before a message can be applied: this node reading the tier
    topic of (tier, feed), and for a resume, having read up to ``position`` (partition → offset)."""

    tier: str
    feed: str
    position: dict[int, int] | None = None


class Subscription:
    __slots__ = ("behind_since", "from_seq", "session", "skipped", "stream", "sub_id")

    def __init__(self, sub_id: str, session: Session, stream: Stream) -> None:
        self.sub_id = sub_id
        self.session = session
        self.stream = stream
        self.behind_since: int | None = None
        self.from_seq = 0
        self.skipped: set[str] = set()

    def deliver(self, frame: bytes, ids: tuple[str, ...], seq: int, now_ms: int) -> bool:
        session = self.session
        if session.closed:
            return False
        if self.behind_since is None:
            sink = session.sink
            if sink.backlog() <= session.limits.byte_budget:
                sink.send(frame)
                if session.key_id is not None or session.on_delivered is not None:  # else nothing to count
                    session.delivered(self.stream, frame, len(ids))
                return False
            # The peer is not reading: stop queueing frames, remember which entities it is owed.
            self.behind_since = now_ms
            self.from_seq = seq
        self.skipped.update(ids)
        if len(self.skipped) > session.limits.max_conflated:
            session.hub.slow_closes += 1
            session.close(CLOSE_SLOW, "slow: too far behind")
            return False
        return True

    def reset_behind(self) -> None:
        """Forget what it was owed (it moved to another stream, which sends it a diff instead)."""
        self.behind_since = None
        self.skipped = set()

    def try_catch_up(self, now_ms: int) -> bool:
        """Send one conflated frame for everything skipped once the backlog drained; True when done."""
        session = self.session
        if session.closed or self.behind_since is None:
            return True
        if session.sink.backlog() > session.limits.byte_budget // 4:
            if now_ms - self.behind_since > session.limits.slow_after_ms:
                session.hub.slow_closes += 1
                session.close(CLOSE_SLOW, "slow: did not read for too long")
                return True
            return False
        stream = self.stream
        upserts, removes = stream.records_for(sorted(self.skipped))
        head = stream.head("delta")
        head["from_seq"], head["conflated"] = self.from_seq, True
        frame = stream.codec.delta(head, upserts, removes, [])
        session.sink.send(frame)
        session.delivered(stream, frame, len(upserts) + len(removes))
        session.hub.conflated_frames += 1
        self.reset_behind()
        return True


class Session:
    def __init__(
        self,
        hub: Hub,
        sink: Sink,
        codec: Codec,
        *,
        tier: str,
        limits: Limits,
        now_ms: int,
        key_id: str | None = None,
        agreement_id: str | None = None,
        principal: str | None = None,
    ) -> None:
        self.hub = hub
        self.sink = sink
        self.codec = codec
        self.tier = tier
        self.limits = limits
        self.key_id = key_id
        self.agreement_id = agreement_id
        # Who is charged for the streams this session makes the node create: its IP address or key.
        self.principal = principal or (f"key:{key_id}" if key_id else f"session:{id(self):x}")
        self.subs: dict[str, Subscription] = {}
        self.closed = False
        self.bucket = TokenBucket(limits.messages_per_s, limits.burst, now_ms)
        self._drops: deque[int] | None = None  # made at the first drop: an empty deque is 0.6 KB a connection
        # A keyed session's use per feed since the usage flush last took it: [messages, records, bytes]
        # (agreements/usage.py); an anonymous session has no account to charge, so nothing is counted.
        self.usage: dict[str, list[int]] = {}
        # The source feeds a licensed key's agreement names (None: every feed of the tier); aggregates are
        # open to every tier's keys, so they are never refused here.
        self.feeds: frozenset[str] | None = None
        # A registered key's messages per Shanghai day (None: no quota); the server counts and enforces it.
        self.daily_quota: int | None = None
        self.on_delivered: Any = None  # optional hook (stream, frame, records) for access logging
        self.on_error: Any = None  # optional hook (ProtocolError) for the I/O layer's (rate-limited) log

    # ------------------------------------------------------------------------------------------ output

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self.sink.send(self.codec.encode(message))

    def error(self, err: ProtocolError) -> None:
        message: dict[str, Any] = {"type": "error", "code": err.code, "message": err.message}
        if err.sub_id is not None:
            message["id"] = err.sub_id
        self.send(message)
        if self.on_error is not None:
            self.on_error(err)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.release_all()
            self.sink.close(code, reason)

    def delivered(self, stream: Stream, frame: bytes, records: int) -> None:
        """A frame was sent: counted for the key's usage, and handed to the access log hook if there is one."""
        if self.key_id is not None:
            tally = self.usage.get(stream.source.feed)
            if tally is None:
                tally = self.usage[stream.source.feed] = [0, 0, 0]
            tally[0] += 1
            tally[1] += records
            tally[2] += len(frame)
        if self.on_delivered is not None:
            self.on_delivered(stream, frame, records)

    # ------------------------------------------------------------------------------------------ input

    def parse(self, data: bytes | str, now_ms: int) -> ClientMessage | None:
        """Rate-limit and decode one frame; answers errors itself and returns None for them."""
        if self.closed:
            return None
        if not self.bucket.take(now_ms):
            drops = self._drops
            if drops is None:
                drops = self._drops = deque()
            drops.append(now_ms)
            while drops and now_ms - drops[0] > self.limits.flood_window_ms:
                drops.popleft()
            if len(drops) >= self.limits.flood_drops:
                self.close(CLOSE_FLOOD, "flood: too many messages")
                return None
            if len(drops) == 1 or len(drops) % 10 == 0:
                self.error(ProtocolError(RATE_LIMITED, "message dropped: rate limit exceeded"))
                self.send(
                    {
                        "type": "quota",
                        "messages_per_s": self.limits.messages_per_s,
                        "burst": self.limits.burst,
                        "dropped": len(drops),
                        "close_after": self.limits.flood_drops,
                    }
                )
            return None
        try:
            return decode_client_message(data, binary=self.codec.binary)
        except ProtocolError as err:
            self.error(err)
            return None

    def receive(self, data: bytes | str, now_ms: int) -> None:
        message = self.parse(data, now_ms)
        if message is not None:
            self.apply(message, now_ms)

    def apply(self, message: ClientMessage, now_ms: int) -> None:
        try:
            if isinstance(message, Subscribe):
                self._subscribe(message, now_ms)
            elif isinstance(message, Update):
                self._update(message, now_ms)
            elif isinstance(message, Unsubscribe):
                self._unsubscribe(message)
            elif isinstance(message, Ping):
                self.send({"type": "pong", "t": message.t, "server_ms": now_ms})
        except ProtocolError as err:
            if err.sub_id is None and not isinstance(message, Ping):
                err.sub_id = message.id
            self.error(err)

    def needs(self, message: ClientMessage) -> list[FeedNeed] | None:
        """What ``message`` needs from the I/O layer before ``apply``; None when it was refused (the error
        is already answered). Only a subscribe needs anything: its feed read, and its resume position."""
        if not isinstance(message, Subscribe):
            return []
        try:
            self.check_subscribe(message)
        except ProtocolError as err:
            err.sub_id = message.id
            self.error(err)
            return None
        resume = message.resume
        position = parse_position(resume.pos) if resume is not None and resume.pos else None
        return [FeedNeed(self.tier, message.feed, position)]

    def needs_for_tier(self, tier: str) -> list[FeedNeed]:
        """What moving every open subscription to ``tier`` needs (see ``change_tier``)."""
        return [FeedNeed(tier, feed) for feed in sorted({sub.stream.source.feed for sub in self.subs.values()})]

    def unavailable(self, message: ClientMessage, reason: str) -> None:
        """A need could not be met: the message is answered with ``feed_unavailable`` instead of applied."""
        self.error(ProtocolError(FEED_UNAVAILABLE, reason, getattr(message, "id", None)))

    # ------------------------------------------------------------------------------------------ verbs

    def check_licensed(self, feed: str) -> None:
        if self.feeds is not None and feed in FEEDS and feed not in self.feeds:
            names = ", ".join(sorted(self.feeds))
            raise ProtocolError(FEED_NOT_LICENSED, f"the key's agreement names {names}, not {feed}")

    def check_subscribe(self, message: Subscribe) -> None:
        """The checks that need no state of the feed (run before the I/O layer loads the feed)."""
        if not is_client_feed(message.feed):
            raise ProtocolError(UNKNOWN_FEED, unknown_feed_message(message.feed))
        self.check_licensed(message.feed)
        if message.id in self.subs:
            raise ProtocolError(DUPLICATE_ID, f"subscription {message.id!r} is already open")
        if len(self.subs) >= self.limits.max_subscriptions:
            raise ProtocolError(
                TOO_MANY_SUBSCRIPTIONS, f"at most {self.limits.max_subscriptions} subscriptions per connection"
            )
        if message.options.crs not in CRS_BY_TIER[self.tier]:
            raise ProtocolError(CRS_NOT_ALLOWED, f"tier {self.tier} may not receive {message.options.crs}")

    def _compile(self, flt: Filter, crs: str, now_ms: int) -> CompiledFilter:
        return self.hub.filters.compile(
            flt, crs, owner=self.principal, vertices_per_minute=self.limits.vertices_per_minute, now_ms=now_ms
        )

    def _subscribe(self, message: Subscribe, now_ms: int) -> None:
        self.check_subscribe(message)
        flt = self._compile(message.filter, message.options.crs, now_ms)
        stream = self._stream_for(message.feed, flt, message.options)
        sub = Subscription(message.id, self, stream)
        self.subs[message.id] = sub
        head = stream.head("subscribed")
        head.update(id=message.id, feed=message.feed, tier=self.tier, crs=stream.crs)
        resume = message.resume
        if resume is not None:
            # 1. This node still holds the very frames after the cursor: send them again, byte for byte.
            replay = stream.replay_after(resume.seq) if resume.epoch == stream.epoch else None
            if replay is not None:
                self.send({**head, "seq": resume.seq, "resumed": True})
                self._send_frames(stream, replay)
                self.hub.join(stream, sub)
                return
            # 2. Another node's (or an earlier process's) cursor: rebuild what changed since its position.
            caught_up = stream.catch_up_from(resume.pos) if resume.pos is not None else None
            if caught_up is not None:
                self.send({**head, "resumed": True, "from_pos": resume.pos})
                self._send_frames(stream, [caught_up])
                self.hub.join(stream, sub)
                return
            # 3. Neither: say so, and start again from a snapshot.
            known = resume.epoch == stream.epoch or resume.pos is not None
            reason = "cursor_too_old" if known else "epoch_unknown"
            self.send({**head, "resumed": False})
            reset = stream.head("reset")
            reset.update(id=message.id, reason=reason)
            self.send(reset)
            self._send_snapshot(stream)
        else:
            self.send(head)
            if message.options.snapshot:
                self._send_snapshot(stream)
        self.hub.join(stream, sub)

    def _stream_for(self, feed: str, flt: CompiledFilter, options: Options) -> Stream:
        return self.hub.stream_for(
            self.tier, feed, flt, options, self.codec, owner=self.principal, max_streams=self.limits.max_streams
        )

    def _send_snapshot(self, stream: Stream) -> None:
        self._send_frames(stream, stream.snapshot_frames())

    def _send_frames(self, stream: Stream, frames: list[tuple[bytes, int]]) -> None:
        """Frames with their record counts, in one write; counted (and audited) like live deliveries."""
        if self.closed or not frames:
            return
        self.sink.send_many([frame for frame, _ in frames])
        for frame, records in frames:
            self.delivered(stream, frame, records)

    def _update(self, message: Update, now_ms: int) -> None:
        sub = self.subs.get(message.id)
        if sub is None:
            raise ProtocolError(UNKNOWN_SUBSCRIPTION, f"no open subscription {message.id!r}")
        old = sub.stream
        flt = self._compile(message.filter, old.crs, now_ms)
        new = self._stream_for(old.source.feed, flt, old.options)
        updated = new.head("updated")
        updated["id"] = message.id
        self.send(updated)
        if new is old:
            return
        # Entities still inside are not sent again, unless the old stream still owed them an update.
        entering = (new.inside - old.inside) | (new.inside & old.pending.keys())
        leaving = old.inside - new.inside
        upserts, _ = new.records_for(sorted(entering))
        head = new.head("delta")
        head["diff"] = True
        self._send_frames(new, [(self.codec.delta(head, upserts, sorted(leaving), []), len(upserts) + len(leaving))])
        self.hub.leave(old, sub)
        sub.stream = new
        sub.reset_behind()
        self.hub.join(new, sub)

    def _unsubscribe(self, message: Unsubscribe) -> None:
        sub = self.subs.pop(message.id, None)
        if sub is None:
            raise ProtocolError(UNKNOWN_SUBSCRIPTION, f"no open subscription {message.id!r}")
        self.hub.leave(sub.stream, sub)
        self.send({"type": "unsubscribed", "id": message.id})

    # ------------------------------------------------------------------------------------------ tier

    def change_tier(self, tier: str, limits: Limits) -> None:
        """A key was downgraded (or upgraded): every subscription restarts on the new tier's data."""
        old_subs = list(self.subs.values())
        self.release_all()
        self.tier = tier
        self.limits = limits
        for sub in old_subs:
            stream = sub.stream
            if stream.crs not in CRS_BY_TIER[tier]:
                self.error(ProtocolError(CRS_NOT_ALLOWED, f"tier {tier} may not receive {stream.crs}", sub.sub_id))
                self.send({"type": "unsubscribed", "id": sub.sub_id, "reason": "tier_changed"})
                continue
            # Not refused for the stream cap: the client did not ask for this move.
            new = self.hub.stream_for(
                tier, stream.source.feed, stream.filter, stream.options, self.codec, owner=self.principal
            )
            moved = Subscription(sub.sub_id, self, new)
            self.subs[sub.sub_id] = moved
            reset = new.head("reset")
            reset.update(id=sub.sub_id, reason="tier_changed", tier=tier)
            self.send(reset)
            self._send_snapshot(new)
            self.hub.join(new, moved)

    def release_all(self) -> None:
        for sub in self.subs.values():
            self.hub.leave(sub.stream, sub)
        self.subs = {}
