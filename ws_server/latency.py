"""Millisecond latency histograms (pure): where the time between a producer and a client goes on a node."""

from __future__ import annotations

from array import array

MAX_MS = 60_000


class LatencyHistogram:
    """Counts per whole millisecond up to ``MAX_MS`` (later values land in the last bin), weighted."""

    __slots__ = ("bins", "total")

    def __init__(self) -> None:
        self.bins = array("q", bytes(8 * (MAX_MS + 1)))
        self.total = 0

    def add(self, ms: float, weight: int = 1) -> None:
        if weight <= 0:
            return
        index = 0 if ms < 0 else MAX_MS if ms >= MAX_MS else int(ms)
        self.bins[index] += weight
        self.total += weight

    def percentile(self, p: float) -> int | None:
        """The smallest bin holding at least ``p`` (0..1) of the weight, or None when empty."""
        if self.total == 0:
            return None
        want = max(1, int(self.total * p + 0.5))
        acc = 0
        for ms, count in enumerate(self.bins):
            acc += count
            if acc >= want:
                return ms
        return MAX_MS

    def summary(self) -> dict[str, int | None]:
        return {
            "count": self.total,
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "max_ms": self.percentile(1.0),
        }

    def clear(self) -> None:
        self.bins = array("q", bytes(8 * (MAX_MS + 1)))
        self.total = 0
