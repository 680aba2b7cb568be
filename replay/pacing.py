"""Replay pacing: maps event time to wall time at a speed factor, with pause, resume and speed changes.

Pure arithmetic on times the caller passes in, so tests need no sleeping.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

MAX = None  # speed "max": as fast as the reader takes it


class ReplayClock:
    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.paused = False
        self._event_anchor = 0  # event time (ms) that was current at ...
        self._wall_anchor = 0.0  # ... this wall time (ms)

    def start(self, event_ms: int, wall_ms: float) -> None:
        self._event_anchor, self._wall_anchor = event_ms, wall_ms

    def position(self, wall_ms: float) -> float:
        """The event time the replay has reached at ``wall_ms``."""
        if self.paused or self.speed is None:
            return float(self._event_anchor)
        return self._event_anchor + (wall_ms - self._wall_anchor) * self.speed

    def due_at(self, event_ms: int) -> float:
        """Wall time at which a record of ``event_ms`` is due (``inf`` while paused)."""
        if self.paused:
            return float("inf")
        if self.speed is None:
            return float("-inf")
        return self._wall_anchor + (event_ms - self._event_anchor) / self.speed

    def due_times(self, event_ms: NDArray[np.int64]) -> NDArray[np.float64]:
        """``due_at`` of many records at once, at a set speed and not paused (the same arithmetic)."""
        if self.speed is None or self.paused:
            raise ValueError("due times exist only at a set speed while running")
        times: NDArray[np.float64] = self._wall_anchor + (event_ms - self._event_anchor) / self.speed
        return times

    def advance(self, event_ms: int) -> None:
        """At max speed the replay is where its last delivered record is."""
        if self.speed is None and event_ms > self._event_anchor:
            self._event_anchor = event_ms

    def pause(self, wall_ms: float) -> None:
        if not self.paused:
            self._event_anchor = int(self.position(wall_ms))
            self.paused = True

    def resume(self, wall_ms: float) -> None:
        if self.paused:
            self.paused = False
            self._wall_anchor = wall_ms

    def set_speed(self, speed: float | None, wall_ms: float) -> None:
        self._event_anchor = int(self.position(wall_ms))
        self._wall_anchor = wall_ms
        self.speed = speed
