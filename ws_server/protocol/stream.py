"""A stream: every subscription with the same (tier, feed, normalised filter, options, codec) shares one.

The stream decides which changes of its source concern it, batches them for ``min_interval_ms``, applies
significance, numbers each frame (``seq`` within ``epoch``) and keeps a bounded replay buffer of the exact
frames so a reconnecting client can resume without gap or duplicate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from itertools import compress
from typing import Any, Protocol

import numpy as np

from .codec import Codec
from .filters import CompiledFilter
from .messages import Options
from .replay_budget import ReplayBudget
from .significance import Signature, signature, significant
from .state import REMOVE, STALE, UNKNOWN, UPSERT, Change, Entry, SourceState, decode_entry, offsets_tail

StreamKey = tuple[Any, ...]

SNAPSHOT_PART_RECORDS = 500  # records per snapshot frame, so no frame grows without bound


def format_position(name: str, offsets: dict[int, int]) -> str:
    """``<stream name>.<next offset of partition 0>.<of partition 1>...``: opaque to clients."""
    return f"{name}.{offsets_tail(offsets)}"


def parse_position(pos: str, name: str | None = None) -> dict[int, int] | None:
    """Partition → offset of a position (of the stream ``name`` when given); None if malformed or foreign."""
    parts = pos.split(".")
    if len(parts) < 2 or (name is not None and parts[0] != name):
        return None
    try:
        offsets = [int(part) for part in parts[1:]]
    except ValueError:
        return None
    if any(o < 0 for o in offsets):
        return None
    return dict(enumerate(offsets))


class Member(Protocol):
    """What a stream (and the hub that ticks it) calls on each of its members; a session's subscription
    is one. The dependency runs one way: the stream defines this, and knows nothing of sessions."""

    def deliver(self, frame: bytes, ids: tuple[str, ...], seq: int, now_ms: int) -> bool:
        """Take the frame (``seq`` of the stream, carrying ``ids``); True when the member fell (or still is)
        behind and is owed a catch-up instead."""
        ...

    def try_catch_up(self, now_ms: int) -> bool:
        """Send what a behind member is owed if it can take it now; True once it is no longer behind."""
        ...


class Stream:
    def __init__(
        self,
        sid: str,
        epoch: str,
        key: StreamKey,
        name: str,
        source: SourceState,
        flt: CompiledFilter,
        options: Options,
        codec: Codec,
        *,
        buffer_frames: int,
        buffer_bytes: int,
        frame_gap_ms: int = 0,
        replay: ReplayBudget | None = None,
        owner: str | None = None,
        on_cache: Callable[[Stream], None] | None = None,
    ) -> None:
        self.sid = sid
        self.epoch = epoch
        self.key = key
        self.name = name  # the same on every node for the same (tier, feed, filter, options)
        self.source = source
        self.filter = flt
        self.options = options
        self.codec = codec
        self.crs = options.crs
        self.seq = 0
        self.members: dict[Member, None] = {}  # insertion-ordered set
        self.idle_since_ms: int | None = None
        self.owner = owner  # who made the node create it (an IP or key): charged to them until it is freed
        self.last_flush_ms = 0
        self._gap_ms = max(options.min_interval_ms, frame_gap_ms)
        self.pending: dict[str, str] = {}  # entity id → UPSERT / STALE / REMOVE
        self.pending_since: int | None = None  # when the oldest pending change reached the node (ms)
        self.pos = self._position()  # the tier topic position the last frame brought members to
        self._catch_up_cache: tuple[str, tuple[object, ...], bytes, int] | None = None
        # (seq, frame, records in it): the frame's entity ids are not kept, a replay only counts them.
        self.buffer: deque[tuple[int, bytes, int]] = deque()
        self._buffer_frames = buffer_frames
        self._buffer_bytes = buffer_bytes
        self._buffered = 0
        self._replay = replay
        self._snapshot_cache: tuple[int, list[tuple[bytes, int]]] | None = None
        self._on_cache = on_cache  # told when a frame is kept for others joining in the same tick
        self.last_sent: dict[str, Signature] | None = {} if options.significance is not None else None
        self.inside: set[str] = set()
        entries, xs, ys = source.arrays()
        for i in np.flatnonzero(self._mask(xs, ys)).tolist():  # a viewport holds a few of 17,000 buses
            entry = entries[i]
            if self.filter.admits(entry.id, entry.route, entry.stop):
                self.inside.add(entry.id)
                if self.last_sent is not None:
                    self.last_sent[entry.id] = signature(entry.x, entry.y, entry.record)

    def _mask(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.filter.mask(xs, ys)

    # ------------------------------------------------------------------------------------------ changes

    def observe(
        self,
        changes: list[Change],
        xs: np.ndarray,
        ys: np.ndarray,
        ids: list[str],
        only: np.ndarray | None = None,
        admitted: np.ndarray | None = None,
    ) -> None:
        """Take this tick's changes of the source (points as arrays and entity ids as a list, in the same
        order); ``only``: the positions of the changes that can concern this stream (stream_index.py), None
        for all, and ``admitted``: which of those the filter's spatial part admits, None to test them here.
        Only the changes inside the spatial part, and entities that were inside, are visited one by one: a
        node has thousands of streams, and most changes concern few of them."""
        if only is not None:
            picked = only.tolist()
            changes = [changes[i] for i in picked]
            ids = [ids[i] for i in picked]
            if admitted is None:
                xs, ys = xs[only], ys[only]
        mask = self._mask(xs, ys) if admitted is None else admitted
        inside = self.inside
        if inside:
            # Entities of this stream whose new point lies outside: C-speed set work, not a Python loop.
            leaving = inside.intersection(compress(ids, np.logical_not(mask).tolist()))
            for entity_id in leaving:
                self._leave(entity_id)
        # The loop below runs for every change in every stream's area: what it can skip, it skips.
        flt = self.filter
        pending = self.pending
        every_entity = flt.admits_everyone
        weighed = self.last_sent is not None
        for i in np.flatnonzero(mask).tolist():
            change = changes[i]
            entry = change.entry
            entity_id = entry.id
            kind = change.kind
            if kind == REMOVE:
                if entity_id in inside:
                    self._leave(entity_id)
                continue
            if every_entity or flt.admits(entity_id, entry.route, entry.stop):
                if kind == STALE:
                    inside.add(entity_id)
                    pending[entity_id] = STALE
                elif weighed:
                    was_inside = entity_id in inside
                    inside.add(entity_id)
                    if self._significant(entry, was_inside):
                        pending[entity_id] = UPSERT
                else:
                    inside.add(entity_id)
                    pending[entity_id] = UPSERT
            elif entity_id in inside:
                self._leave(entity_id)

    def _leave(self, entity_id: str) -> None:
        """It was removed or moved out of the area: to the subscriber it is gone."""
        self.inside.discard(entity_id)
        self.pending[entity_id] = REMOVE
        if self.last_sent is not None:
            self.last_sent.pop(entity_id, None)

    def _significant(self, entry: Entry, was_inside: bool) -> bool:
        if self.last_sent is None:
            return True
        assert self.options.significance is not None
        new = signature(entry.x, entry.y, entry.record)
        old = self.last_sent.get(entry.id)
        if was_inside and old is not None and not significant(self.options.significance, old, new):
            return False
        self.last_sent[entry.id] = new
        return True

    def due(self, now_ms: int) -> bool:
        return bool(self.pending) and now_ms - self.last_flush_ms >= self._gap_ms

    def flush(self, now_ms: int) -> tuple[bytes, tuple[str, ...]] | None:
        """The next delta frame from what is pending, or None if nothing is."""
        if not self.pending:
            return None
        entries = self.source.entries
        upserts: list[bytes] = []
        removes: list[str] = []
        stales: list[str] = []
        for entity_id, kind in self.pending.items():
            if kind == REMOVE:
                removes.append(entity_id)
            elif kind == STALE:
                stales.append(entity_id)
            else:
                entry = entries.get(entity_id)
                if entry is not None:
                    upserts.append(entry.encoded(self.codec, self.crs))
        ids = tuple(self.pending)
        self.pending = {}
        self.pending_since = None
        self.seq += 1
        self.last_flush_ms = now_ms
        self.pos = self._position()
        head = self.head("delta")
        frame = self.codec.delta(head, upserts, removes, stales)
        self._remember(self.seq, frame, ids)
        return frame, ids

    def head(self, kind: str) -> dict[str, Any]:
        """The fields every push of this stream starts with: type, stream, epoch, seq and pos."""
        head: dict[str, Any] = {"type": kind, "stream": self.sid, "epoch": self.epoch, "seq": self.seq}
        if self.pos is not None:
            head["pos"] = self.pos
        return head

    def _position(self) -> str | None:
        if not self.source.offsets:
            return None
        return f"{self.name}.{self.source.offsets_text()}"  # format_position with the source's shared tail

    # ------------------------------------------------------------------------------------------ replay

    def _remember(self, seq: int, frame: bytes, ids: tuple[str, ...]) -> None:
        self.buffer.append((seq, frame, len(ids)))
        self._buffered += len(frame)
        if self._replay is not None:
            self._replay.added(self, seq, len(frame))
        while self.buffer and (len(self.buffer) > self._buffer_frames or self._buffered > self._buffer_bytes):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, old, _ = self.buffer.popleft()
        self._buffered -= len(old)
        if self._replay is not None:
            self._replay.released(len(old))

    def drop_through(self, seq: int) -> None:
        """Forget buffered frames up to ``seq`` (the process-wide replay budget is over)."""
        while self.buffer and self.buffer[0][0] <= seq:
            self._drop_oldest()

    def holds(self, seq: int) -> bool:
        return bool(self.buffer) and self.buffer[0][0] <= seq <= self.buffer[-1][0]

    def free(self) -> None:
        """The stream is dropped: its buffer goes, and with it its share of the replay budget; so do its
        cached frames and entity sets, in case something still holds the stream object."""
        while self.buffer:
            self._drop_oldest()
        self.forget_cached_frames()
        self.inside = set()
        self.pending = {}
        if self.last_sent is not None:
            self.last_sent = {}

    def replay_after(self, seq: int) -> list[tuple[bytes, int]] | None:
        """Frames after ``seq`` exactly (each with its record count), or None when the buffer no longer
        reaches back that far."""
        if seq == self.seq:
            return []
        if seq > self.seq or not self.buffer or self.buffer[0][0] > seq + 1:
            return None
        return [(frame, records) for s, frame, records in self.buffer if s > seq]

    def catch_up_from(self, pos: str) -> tuple[bytes, int] | None:
        """One conflated ``delta`` taking a client from ``pos`` (a position of this stream, from any node)
        to now: every entity that changed since is sent once as it is now, or removed if it left the
        filter; None if this node's history of the topic does not reach back to ``pos``."""
        position = parse_position(pos, self.name)
        if position is None or self.source.covers(position) is not True:
            return None
        now = tuple(sorted(self.source.offsets.items()))
        cached = self._catch_up_cache
        if cached is not None and cached[0] == pos and cached[1] == (self.seq, *now):
            return cached[2], cached[3]
        entries = self.source.entries
        upserts: list[bytes] = []
        removes: list[str] = []
        for entity_id, before in self.source.changed_since(position):
            if entity_id in self.pending:
                continue  # the next delta carries it
            entry = entries.get(entity_id)
            if entry is not None and before is not None and entry.raw == before:
                # Only a repeat of what it was at pos (a worker's replay after a crash): the client has it.
                continue
            if entity_id in self.inside and entry is not None:
                upserts.append(entry.encoded(self.codec, self.crs))
                continue
            if before is None:
                continue  # it did not exist at pos, and is not here now: the client never had it
            old = None if before == UNKNOWN else decode_entry(entity_id, before)
            if old is None or self._admits(old):
                removes.append(entity_id)  # had it (or may have had it, if older than the history)
        head = self.head("delta")
        head["from_pos"] = pos
        head["conflated"] = True
        frame = self.codec.delta(head, upserts, removes, [])
        self._catch_up_cache = (pos, (self.seq, *now), frame, len(upserts) + len(removes))
        if self._on_cache is not None:
            self._on_cache(self)
        return frame, len(upserts) + len(removes)

    def _admits(self, entry: Entry) -> bool:
        inside = bool(self._mask(np.array([entry.x]), np.array([entry.y]))[0])
        return inside and self.filter.admits(entry.id, entry.route, entry.stop)

    # ------------------------------------------------------------------------------------------ snapshots

    def forget_cached_frames(self) -> None:
        """Drop the snapshot and catch-up frames kept for clients joining in the same tick. They save
        rebuilding when many join at once (a reconnect storm); kept longer, every stream that a client
        joined holds a copy of its whole area's records for as long as it lives."""
        self._snapshot_cache = None
        self._catch_up_cache = None

    def snapshot_frames(self) -> list[tuple[bytes, int]]:
        """The current state inside the filter as snapshot frames, each with its record count (shared
        while ``seq`` is unchanged)."""
        if self._snapshot_cache is not None and self._snapshot_cache[0] == self.seq:
            return self._snapshot_cache[1]
        entries = self.source.entries
        records = [entries[i].encoded(self.codec, self.crs) for i in self.inside if i in entries]
        parts = [records[i : i + SNAPSHOT_PART_RECORDS] for i in range(0, len(records), SNAPSHOT_PART_RECORDS)]
        parts = parts or [[]]
        frames: list[tuple[bytes, int]] = []
        for n, part in enumerate(parts):
            head = self.head("snapshot")
            head["part"], head["last"] = n, n == len(parts) - 1
            frames.append((self.codec.records(head, part), len(part)))
        self._snapshot_cache = (self.seq, frames)
        if self._on_cache is not None:
            self._on_cache(self)
        return frames

    def records_for(self, ids: Iterable[str]) -> tuple[list[bytes], list[str]]:
        """Current records of ``ids`` still inside, and the ids no longer inside (for diffs / catch-up)."""
        entries = self.source.entries
        upserts: list[bytes] = []
        removes: list[str] = []
        for entity_id in ids:
            entry = entries.get(entity_id)
            if entity_id in self.inside and entry is not None:
                upserts.append(entry.encoded(self.codec, self.crs))
            else:
                removes.append(entity_id)
        return upserts, removes
