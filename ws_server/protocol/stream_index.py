"""Which of a source's streams a tick's changes can concern, found for all streams at once.

A node may hold one stream per phone viewport: thousands of small areas, each touched by a few of a tick's
changes. Asking every stream about every change costs a Python call per stream per tick (75 ms a tick at
5,000 viewports and 100 changes); testing every change against every stream's envelope is one numpy step.

A change concerns a stream when its new point or its point before this tick lies in the stream's envelope
(``CompiledFilter.bounds``): an entity the stream holds was inside its area when last seen, so it is found by
its old point even when it left. Streams without an envelope (the whole feed, routes or ids only) are asked
about every change, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from .stream import Stream

CELLS_PER_STEP = 1 << 21  # stream × change tests per numpy step: bounds the temporary arrays (~2 MB each)


class StreamIndex:
    def __init__(self, streams: Iterable[Stream], *, envelopes: bool = True) -> None:
        """``envelopes=False`` asks every stream about every change: the plain loop this index replaces,
        kept as the reference its test holds it to."""
        self.unbounded: list[Stream] = []
        self.bounded: list[Stream] = []
        for stream in streams:
            (self.unbounded if stream.filter.bounds is None or not envelopes else self.bounded).append(stream)
        bounds = np.array([s.filter.bounds for s in self.bounded], dtype=np.float64).reshape(-1, 4)
        self.x0, self.y0, self.x1, self.y1 = (bounds[:, i : i + 1] for i in range(4))

    def candidates(
        self, xs: NDArray[np.float64], ys: NDArray[np.float64], was_x: NDArray[np.float64], was_y: NDArray[np.float64]
    ) -> Iterator[tuple[Stream, NDArray[np.intp] | None, NDArray[np.bool_] | None]]:
        """(stream, the positions of the changes that may concern it, which of those have their new point in
        the stream's envelope); (stream, None, None) for all changes. Streams no change concerns are left out."""
        for stream in self.unbounded:
            yield stream, None, None
        if not self.bounded or xs.size == 0:
            return
        step = max(1, CELLS_PER_STEP // len(self.bounded))
        rows: list[NDArray[np.intp]] = []
        cols: list[NDArray[np.intp]] = []
        news: list[NDArray[np.bool_]] = []
        for start in range(0, xs.size, step):
            end = start + step
            new = self._inside(xs[start:end], ys[start:end])
            r, c = np.nonzero(new | self._inside(was_x[start:end], was_y[start:end]))
            rows.append(r)
            cols.append(c + start)
            news.append(new[r, c])
        row, col, inside = np.concatenate(rows), np.concatenate(cols), np.concatenate(news)
        if row.size == 0:
            return
        order = np.argsort(row, kind="stable")  # per stream, its changes stay in the tick's order
        row, col, inside = row[order], col[order], inside[order]
        cuts = np.flatnonzero(np.diff(row)) + 1
        firsts = row[np.r_[0, cuts]].tolist()
        for first, changes, new_inside in zip(firsts, np.split(col, cuts), np.split(inside, cuts), strict=True):
            yield self.bounded[first], changes, new_inside

    def _inside(self, xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Streams × points: the point lies in the stream's envelope (NaN points lie nowhere)."""
        x, y = xs[None, :], ys[None, :]
        inside: NDArray[np.bool_] = (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)
        return inside
