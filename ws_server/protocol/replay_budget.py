"""One byte budget for the replay buffers of every stream of the process.

Each stream keeps its own frames for resume, bounded by frame count and bytes; this bounds their sum, so
a thousand streams cannot hold a thousand full buffers. When the total goes over, the oldest frames of
the whole process go first (whichever stream holds them): a client resuming from there gets a conflated
catch-up or a reset instead of an exact replay, which the protocol already provides for.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Protocol


class ReplayHolder(Protocol):
    """A stream, as the budget sees it."""

    def drop_through(self, seq: int) -> None:
        """Forget buffered frames up to ``seq`` (calling ``released`` for each)."""
        ...

    def holds(self, seq: int) -> bool:
        """Whether frame ``seq`` is still buffered."""
        ...


class ReplayBudget:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0  # bytes of every buffered frame of every stream
        self.frames = 0
        # (stream, seq) in the order they were kept. Weak references: a freed stream must not stay alive
        # (with its entity sets and cached frames) until its stale entries are compacted away.
        self._order: deque[tuple[weakref.ref[ReplayHolder], int]] = deque()

    def added(self, holder: ReplayHolder, seq: int, size: int) -> None:
        self.used += size
        self.frames += 1
        self._order.append((weakref.ref(holder), seq))
        while self.used > self.max_bytes and self._order:
            ref, oldest_seq = self._order.popleft()
            oldest = ref()
            if oldest is not None:
                oldest.drop_through(oldest_seq)  # nothing if that stream already let it go
        # Entries of frames the streams dropped themselves linger until here: keep them few.
        if len(self._order) > 2 * self.frames + 1024:
            self._order = deque(entry for entry in self._order if _still_held(*entry))

    def released(self, size: int) -> None:
        self.used -= size
        self.frames -= 1


def _still_held(ref: weakref.ref[ReplayHolder], seq: int) -> bool:
    holder = ref()
    return holder is not None and holder.holds(seq)
