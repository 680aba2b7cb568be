"""Which of a source's streams a tick's changes can concern, found for all streams at once.

A node may hold one stream per phone viewport: thousands of small areas, each touched by a few of a tick's
changes. Asking every stream about every change costs a Python call per stream per tick (75 ms a tick at
5,000 viewports and 100 changes); finding the (stream, change) pairs whose points lie in the envelopes takes
a few numpy steps for all streams together.

A change concerns a stream when its new point or its point before this tick lies in the stream's envelope
(``CompiledFilter.bounds``): an entity the stream holds was inside its area when last seen, so it is found by
its old point even when it left. Streams without an envelope (the whole feed, routes or ids only) are asked
about every change, as before. For the pairs found, the rest of each filter's spatial test (a circle, a
polygon) is made here too, for all streams in one pass (filters.py ``PairTests``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .filters import PairTests

if TYPE_CHECKING:
    from .stream import Stream

PAIRS_PER_STEP = 1 << 20  # (stream, point) candidates a numpy step may make at most: bounds its arrays


class StreamIndex:
    def __init__(self, streams: Iterable[Stream], *, envelopes: bool = True) -> None:
        """``envelopes=False`` asks every stream about every change: the plain loop this index replaces,
        kept as the reference its test holds it to."""
        self.unbounded: list[Stream] = []
        self.bounded: list[Stream] = []
        for stream in streams:
            (self.unbounded if stream.filter.bounds is None or not envelopes else self.bounded).append(stream)
        bounds = np.array([s.filter.bounds for s in self.bounded], dtype=np.float64).reshape(-1, 4)
        self.x0, self.y0, self.x1, self.y1 = (np.ascontiguousarray(bounds[:, i]) for i in range(4))
        self.tests = PairTests([s.filter for s in self.bounded])

    def candidates(
        self, xs: NDArray[np.float64], ys: NDArray[np.float64], was_x: NDArray[np.float64], was_y: NDArray[np.float64]
    ) -> Iterator[tuple[Stream, NDArray[np.intp] | None, NDArray[np.bool_] | None]]:
        """(stream, the positions of the changes that may concern it in the tick's order, which of those have
        their new point admitted by the stream's spatial test); (stream, None, None) for all changes. Streams
        no change concerns are left out."""
        for stream in self.unbounded:
            yield stream, None, None
        n = xs.size
        if not self.bounded or n == 0:
            return
        # Changes in steps, so that even a catch-up of thousands of changes against wide envelopes makes
        # arrays of bounded size (each change brings two points: new and old).
        step = max(1, PAIRS_PER_STEP // (2 * len(self.bounded)))
        parts = [self._pairs(xs, ys, was_x, was_y, start, min(n, start + step)) for start in range(0, n, step)]
        keys = np.concatenate([k for k, _ in parts])
        news = np.concatenate([v for _, v in parts])
        if keys.size == 0:
            return
        # One (stream, change) each, sorted by stream then change; "new point inside" if either point said so.
        unique, inverse = np.unique(keys, return_inverse=True)
        in_envelope = np.zeros(unique.size, dtype=bool)
        np.logical_or.at(in_envelope, inverse, news)
        rows, cols = np.divmod(unique, n)
        admitted = self.tests.admitted(rows, xs[cols], ys[cols], in_envelope)
        cuts = (np.flatnonzero(np.diff(rows)) + 1).tolist()
        starts, ends = [0, *cuts], [*cuts, rows.size]
        bounded = self.bounded
        for row, a, b in zip(rows[starts].tolist(), starts, ends, strict=True):
            yield bounded[row], cols[a:b], admitted[a:b]

    def _pairs(
        self,
        xs: NDArray[np.float64],
        ys: NDArray[np.float64],
        was_x: NDArray[np.float64],
        was_y: NDArray[np.float64],
        start: int,
        end: int,
    ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """For changes ``start:end``: every (stream, change) whose new or old point lies in the stream's
        envelope, as ``stream × len(xs) + change``, and whether it was the new point. The points are sorted
        by longitude once; each envelope's longitude range is then two binary searches, and only the points
        in that range are tested on latitude."""
        n = xs.size
        change = np.arange(start, end)
        px = np.concatenate([xs[start:end], was_x[start:end]])
        py = np.concatenate([ys[start:end], was_y[start:end]])
        is_new = np.arange(px.size) < end - start
        valid = np.flatnonzero(~(np.isnan(px) | np.isnan(py)))  # a point nowhere lies in no envelope
        order = valid[np.argsort(px[valid], kind="stable")]
        sorted_x = px[order]
        lo = np.searchsorted(sorted_x, self.x0, side="left")
        hi = np.searchsorted(sorted_x, self.x1, side="right")
        counts = hi - lo
        rows = np.repeat(np.arange(len(self.bounded)), counts)
        within = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        points = order[np.repeat(lo, counts) + within]
        y = py[points]
        hit = (y >= self.y0[rows]) & (y <= self.y1[rows])
        rows, points = rows[hit], points[hit]
        changes = np.concatenate([change, change])[points]
        return rows.astype(np.int64) * n + changes, is_new[points]
