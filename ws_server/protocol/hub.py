"""The node's fan-out core: sources (latest state per tier topic), streams, and the tick that turns a
batch of tier records into one frame per stream, delivered as the same bytes to every member."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from ..latency import LatencyHistogram
from .codec import Codec
from .errors import TOO_MANY_STREAMS, ProtocolError
from .filter_cache import FilterCache
from .filters import CompiledFilter, DistrictLookup
from .messages import Options
from .replay_budget import ReplayBudget
from .state import SourceState
from .stream import Member, Stream, StreamKey
from .stream_index import StreamIndex


def options_key(options: Options) -> tuple[object, ...]:
    sig = options.significance
    sig_key = None if sig is None else (sig.metres, sig.slots, sig.status_only)
    return (options.min_interval_ms, sig_key, options.crs)


class Hub:
    def __init__(
        self,
        districts: DistrictLookup,
        *,
        node_id: str | None = None,
        buffer_frames: int = 2048,
        buffer_bytes: int = 16 << 20,
        replay_bytes: int = 256 << 20,
        idle_grace_ms: int = 10_000,
        frame_gap_ms: int = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.districts = districts
        self.frame_gap_ms = frame_gap_ms  # a stream's frames at least this far apart (a client may ask more)
        self.node_id = node_id or secrets.token_hex(4)
        self.buffer_frames = buffer_frames
        self.buffer_bytes = buffer_bytes
        # A stream outlives its last member this long, so a client that reconnects at once gets an exact
        # replay; later, a resume rebuilds from its position (the stream's name is the same on any node).
        self.idle_grace_ms = idle_grace_ms
        self.replay = ReplayBudget(replay_bytes)  # every stream's replay buffer together
        self.streams_by_owner: Counter[str] = Counter()
        self.filters = FilterCache(districts)  # compiled filters shared by equal subscriptions
        self._budgets_checked_ms = 0
        self.sources: dict[tuple[str, str], SourceState] = {}
        self.streams: dict[StreamKey, Stream] = {}
        self.by_source: dict[SourceState, dict[Stream, None]] = {}
        self._indexes: dict[SourceState, StreamIndex] = {}  # by_source's streams by envelope, rebuilt on change
        self.incoming: dict[SourceState, list[tuple[str, bytes]]] = {}
        self.incoming_at: dict[SourceState, int] = {}  # when the oldest waiting record reached the node
        self.clock = clock  # wall clock (ms) for latency figures; without one the tick's now_ms is used
        self.latency = LatencyHistogram()  # record reached the node → its frame written to every member
        self.behind: set[Member] = set()  # members owed a catch-up: only the hub adds and removes them
        self._idle: dict[Stream, None] = {}  # streams left by their last member: the only ones _expire visits
        # The streams a tick visits after its changes, instead of every stream: those with changes waiting
        # (until they are flushed) and those keeping a frame for clients joining in the same tick.
        self._pending: dict[Stream, None] = {}
        self._cached: dict[Stream, None] = {}
        self._ids = itertools.count(1)
        self.frames_sent = 0
        self.records_delivered = 0
        # How slow readers were served: catch-up frames sent in place of what they skipped, and the ones closed.
        self.conflated_frames = 0
        self.slow_closes = 0

    # ------------------------------------------------------------------------------------------ sources

    def source(self, tier: str, feed: str) -> SourceState:
        src = self.sources.get((tier, feed))
        if src is None:
            src = self.sources[(tier, feed)] = SourceState(tier, feed)
            self.by_source[src] = {}
        return src

    def ingest(self, tier: str, feed: str, items: Iterable[tuple[str, bytes]], received_ms: int | None = None) -> None:
        """Tier topic records (entity id, value bytes); applied at the next tick, all at once."""
        src = self.source(tier, feed)
        self.incoming.setdefault(src, []).extend(items)
        if received_ms is not None:
            self.incoming_at.setdefault(src, received_ms)

    def ingest_records(
        self,
        tier: str,
        feed: str,
        partition: int,
        records: list[tuple[int, str, bytes]],
        next_offset: int,
        received_ms: int | None = None,
    ) -> None:
        """Records of one partition as (offset, entity id, value): kept in the source's history, and
        applied at the next tick unless the snapshot already holds them; the source then stands at
        ``next_offset``."""
        src = self.source(tier, feed)
        fresh = src.log(partition, records, next_offset)
        if fresh:
            self.ingest(tier, feed, fresh, received_ms)
        else:
            self.incoming.setdefault(src, [])

    # ------------------------------------------------------------------------------------------ streams

    def stream_for(
        self,
        tier: str,
        feed: str,
        flt: CompiledFilter,
        options: Options,
        codec: Codec,
        *,
        owner: str | None = None,
        max_streams: int | None = None,
    ) -> Stream:
        """The stream for this (tier, feed, filter, options, codec), created if none exists: a new one is
        charged to ``owner``, who may have at most ``max_streams`` alive (idle ones in their grace too)."""
        key = (tier, feed, flt.key, options_key(options), codec.name)
        stream = self.streams.get(key)
        if stream is None:
            if owner is not None and max_streams is not None and self.streams_by_owner[owner] >= max_streams:
                raise ProtocolError(
                    TOO_MANY_STREAMS,
                    f"at most {max_streams} distinct streams per IP address or key (idle ones are freed "
                    f"{self.idle_grace_ms // 1000} s after their last subscriber leaves); share a filter or retry",
                )
            src = self.source(tier, feed)
            sid = f"s{next(self._ids)}"
            # Resume positions name the stream by what it carries, the same on every node.
            name = hashlib.blake2b(repr(key[:4]).encode(), digest_size=4).hexdigest()
            stream = Stream(
                sid,
                f"{self.node_id}-{sid}",
                key,
                name,
                src,
                flt,
                options,
                codec,
                buffer_frames=self.buffer_frames,
                buffer_bytes=self.buffer_bytes,
                frame_gap_ms=self.frame_gap_ms,
                replay=self.replay,
                owner=owner,
                on_cache=self._note_cached,
            )
            if owner is not None:
                self.streams_by_owner[owner] += 1
            self.streams[key] = stream
            self.by_source[src][stream] = None
            self._indexes.pop(src, None)
        return stream

    def join(self, stream: Stream, member: Member) -> None:
        stream.members[member] = None
        stream.idle_since_ms = None
        self._idle.pop(stream, None)

    def leave(self, stream: Stream, member: Member) -> None:
        stream.members.pop(member, None)
        self.behind.discard(member)
        if not stream.members and stream.idle_since_ms is None:
            stream.idle_since_ms = -1  # stamped by the next tick
            self._idle[stream] = None

    def stream_by_epoch(self, epoch: str) -> Stream | None:
        for stream in self.streams.values():
            if stream.epoch == epoch:
                return stream
        return None

    # ------------------------------------------------------------------------------------------ tick

    def tick(self, now_ms: int) -> int:
        """Apply what arrived, send every due stream's frame to its members; returns frames built."""
        for src, items in self.incoming.items():
            for entity_id, raw in items:
                src.apply(entity_id, raw)
            items.clear()
            src.advance()
            received = self.incoming_at.pop(src, now_ms)
            changes = src.take_changes()
            streams = self.by_source[src]
            if not changes or not streams:
                continue
            n = len(changes)
            xs = np.fromiter((c.entry.x for c in changes), dtype=np.float64, count=n)
            ys = np.fromiter((c.entry.y for c in changes), dtype=np.float64, count=n)
            was_x = np.fromiter((c.was_x for c in changes), dtype=np.float64, count=n)
            was_y = np.fromiter((c.was_y for c in changes), dtype=np.float64, count=n)
            changed_ids = [c.entry.id for c in changes]
            index = self._indexes.get(src)
            if index is None:
                index = self._indexes[src] = self.index_streams(streams)
            for stream, only, admitted in index.candidates(xs, ys, was_x, was_y):
                stream.observe(changes, xs, ys, changed_ids, only, admitted)
                if stream.pending:
                    self._pending[stream] = None
                    if stream.pending_since is None:
                        stream.pending_since = received
        for stream in self._cached:
            stream.forget_cached_frames()
        self._cached.clear()
        built = 0
        for stream in list(self._pending):
            if not stream.pending:
                del self._pending[stream]
                continue
            if not stream.due(now_ms):
                continue
            del self._pending[stream]
            since = stream.pending_since
            flushed = stream.flush(now_ms)
            if flushed is None:
                continue
            built += 1
            frame, ids = flushed
            seq = stream.seq
            members = stream.members
            for member in list(members):
                if member.deliver(frame, ids, seq, now_ms):
                    self.behind.add(member)
            if members:
                self.frames_sent += len(members)
                self.records_delivered += len(ids) * len(members)
                if since is not None:
                    written = self.clock() if self.clock is not None else now_ms
                    self.latency.add(written - since, len(ids) * len(members))
        if self.behind:
            for member in list(self.behind):
                if member.try_catch_up(now_ms):
                    self.behind.discard(member)
        self._expire(now_ms)
        if now_ms - self._budgets_checked_ms >= 1000:
            self._budgets_checked_ms = now_ms
            self.filters.forget_idle_budgets(now_ms)
        return built

    def _note_cached(self, stream: Stream) -> None:
        self._cached[stream] = None

    def index_streams(self, streams: Iterable[Stream]) -> StreamIndex:
        return StreamIndex(streams)

    def _expire(self, now_ms: int) -> None:
        """Free streams nobody has listened to for the grace period: their buffers, and their owner's share."""
        for stream in list(self._idle):
            idle = stream.idle_since_ms
            if idle is None or stream.members:
                del self._idle[stream]
            elif idle == -1:
                stream.idle_since_ms = now_ms
            elif now_ms - idle >= self.idle_grace_ms:
                del self._idle[stream]
                if self.streams.get(stream.key) is stream:
                    del self.streams[stream.key]
                    self.by_source[stream.source].pop(stream, None)
                    self._indexes.pop(stream.source, None)
                    self._pending.pop(stream, None)
                    self._cached.pop(stream, None)
                    stream.free()
                    if stream.owner is not None:
                        self.streams_by_owner[stream.owner] -= 1
                        if self.streams_by_owner[stream.owner] <= 0:
                            del self.streams_by_owner[stream.owner]
