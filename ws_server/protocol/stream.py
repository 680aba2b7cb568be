"""A stream: every subscription with the same (tier, feed, normalised filter, options, codec) shares one.

The stream decides which changes of its source concern it, batches them for ``min_interval_ms``, applies
significance, numbers each frame (``seq`` within ``epoch``) and keeps a bounded replay buffer of the exact
frames so a reconnecting client can resume without gap or duplicate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .codec import Codec
from .filters import CompiledFilter
from .messages import Options
from .significance import Signature, signature, significant
from .state import REMOVE, STALE, UPSERT, Change, Entry, SourceState

if TYPE_CHECKING:
    from .session import Subscription

StreamKey = tuple[Any, ...]

SNAPSHOT_PART_RECORDS = 500  # records per snapshot frame, so no frame grows without bound


class Stream:
    def __init__(
        self,
        sid: str,
        epoch: str,
        key: StreamKey,
        source: SourceState,
        flt: CompiledFilter,
        options: Options,
        codec: Codec,
        *,
        buffer_frames: int,
        buffer_bytes: int,
    ) -> None:
        self.sid = sid
        self.epoch = epoch
        self.key = key
        self.source = source
        self.filter = flt
        self.options = options
        self.codec = codec
        self.crs = options.crs
        self.seq = 0
        self.members: dict[Subscription, None] = {}  # insertion-ordered set
        self.idle_since_ms: int | None = None
        self.last_flush_ms = 0
        self.pending: dict[str, str] = {}  # entity id → UPSERT / STALE / REMOVE
        self.buffer: deque[tuple[int, bytes, tuple[str, ...]]] = deque()
        self._buffer_frames = buffer_frames
        self._buffer_bytes = buffer_bytes
        self._buffered = 0
        self._snapshot_cache: tuple[int, list[bytes]] | None = None
        self.last_sent: dict[str, Signature] | None = {} if options.significance is not None else None
        self.inside: set[str] = set()
        entries, xs, ys = source.arrays()
        for entry, ok in zip(entries, self._mask(xs, ys), strict=True):
            if ok and self.filter.admits(entry.id, entry.route):
                self.inside.add(entry.id)
                if self.last_sent is not None:
                    self.last_sent[entry.id] = signature(entry.x, entry.y, entry.record)

    def _mask(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.filter.mask(xs, ys)

    # ------------------------------------------------------------------------------------------ changes

    def observe(self, changes: list[Change], xs: np.ndarray, ys: np.ndarray) -> None:
        """Take this tick's changes of the source (points given as arrays, in the same order)."""
        mask = self._mask(xs, ys)
        inside = self.inside
        pending = self.pending
        for change, ok in zip(changes, mask.tolist(), strict=True):
            entry = change.entry
            entity_id = entry.id
            was_inside = entity_id in inside
            if change.kind == REMOVE:
                if was_inside:
                    inside.discard(entity_id)
                    pending[entity_id] = REMOVE
                    if self.last_sent is not None:
                        self.last_sent.pop(entity_id, None)
                continue
            if ok and self.filter.admits(entity_id, entry.route):
                inside.add(entity_id)
                if change.kind == STALE:
                    pending[entity_id] = STALE
                elif self._significant(entry, was_inside):
                    pending[entity_id] = UPSERT
            elif was_inside:  # it moved out of the area: to the subscriber it is gone
                inside.discard(entity_id)
                pending[entity_id] = REMOVE
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
        return bool(self.pending) and now_ms - self.last_flush_ms >= self.options.min_interval_ms

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
        self.seq += 1
        self.last_flush_ms = now_ms
        head = {"type": "delta", "stream": self.sid, "epoch": self.epoch, "seq": self.seq}
        frame = self.codec.delta(head, upserts, removes, stales)
        self._remember(self.seq, frame, ids)
        return frame, ids

    # ------------------------------------------------------------------------------------------ replay

    def _remember(self, seq: int, frame: bytes, ids: tuple[str, ...]) -> None:
        self.buffer.append((seq, frame, ids))
        self._buffered += len(frame)
        while self.buffer and (len(self.buffer) > self._buffer_frames or self._buffered > self._buffer_bytes):
            _, old, _ = self.buffer.popleft()
            self._buffered -= len(old)

    def replay_after(self, seq: int) -> list[bytes] | None:
        """Frames after ``seq`` exactly, or None when the buffer no longer reaches back that far."""
        if seq == self.seq:
            return []
        if seq > self.seq or not self.buffer or self.buffer[0][0] > seq + 1:
            return None
        return [frame for s, frame, _ in self.buffer if s > seq]

    # ------------------------------------------------------------------------------------------ snapshots

    def snapshot_frames(self) -> list[bytes]:
        """The current state inside the filter as snapshot frames (shared while ``seq`` is unchanged)."""
        if self._snapshot_cache is not None and self._snapshot_cache[0] == self.seq:
            return self._snapshot_cache[1]
        entries = self.source.entries
        records = [entries[i].encoded(self.codec, self.crs) for i in self.inside if i in entries]
        parts = [records[i : i + SNAPSHOT_PART_RECORDS] for i in range(0, len(records), SNAPSHOT_PART_RECORDS)]
        parts = parts or [[]]
        frames = []
        for n, part in enumerate(parts):
            head = {
                "type": "snapshot",
                "stream": self.sid,
                "epoch": self.epoch,
                "seq": self.seq,
                "part": n,
                "last": n == len(parts) - 1,
            }
            frames.append(self.codec.records(head, part))
        self._snapshot_cache = (self.seq, frames)
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
