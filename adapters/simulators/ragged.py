"""Many piecewise-linear functions evaluated at once.

Each vehicle follows its own route's function (time → distance along the route, distance → x/y). Instead
of looping over routes, all routes' breakpoints are concatenated with each route shifted by an offset, so
one ``searchsorted`` over the concatenation finds every vehicle's segment at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class RaggedPiecewise:
    """Piecewise-linear functions ``f_r`` on ``[0, span_r]``, one per route ``r``, with values in columns."""

    def __init__(self, breakpoints: Sequence[FloatArray], values: Sequence[FloatArray]) -> None:
        if len(breakpoints) != len(values) or not breakpoints:
            raise ValueError("need one value array per breakpoint array, and at least one route")
        spans = np.array([float(b[-1] - b[0]) for b in breakpoints])
        if np.any(spans <= 0):
            raise ValueError("every route needs a positive span")
        # A gap between routes keeps the shifted ranges disjoint, so a key never lands in a neighbour.
        self.offsets = np.concatenate([[0.0], np.cumsum(spans + 1.0)[:-1]])
        self.spans = spans
        self.starts = np.concatenate([[0], np.cumsum([len(b) for b in breakpoints])[:-1]]).astype(np.int64)
        self.ends = (self.starts + np.array([len(b) for b in breakpoints])).astype(np.int64)
        self.keys = np.concatenate([b - b[0] + off for b, off in zip(breakpoints, self.offsets, strict=True)])
        stacked = [
            np.asarray(v, dtype=np.float64).reshape(len(b), -1) for b, v in zip(breakpoints, values, strict=True)
        ]
        self.values = np.concatenate(stacked, axis=0)

    def segment(self, route: IntArray, x: FloatArray) -> tuple[IntArray, FloatArray]:
        """Index of each point's segment start (global) and its fraction along the segment."""
        x = np.clip(x, 0.0, self.spans[route])
        key = self.offsets[route] + x
        i = np.searchsorted(self.keys, key, side="right") - 1
        i = np.clip(i, self.starts[route], self.ends[route] - 2)
        width = self.keys[i + 1] - self.keys[i]
        frac = np.divide(key - self.keys[i], width, out=np.zeros_like(key), where=width > 0)
        return i, np.clip(frac, 0.0, 1.0)

    def evaluate(self, route: IntArray, x: FloatArray) -> tuple[FloatArray, IntArray, FloatArray]:
        """Interpolated values (rows per point), segment index and fraction."""
        i, frac = self.segment(route, x)
        a = self.values[i]
        b = self.values[i + 1]
        return a + (b - a) * frac[:, None], i, frac

    def slope(self, i: IntArray) -> FloatArray:
        """d value / d x of each segment (rows per point)."""
        width = (self.keys[i + 1] - self.keys[i])[:, None]
        diff = self.values[i + 1] - self.values[i]
        return np.divide(diff, width, out=np.zeros_like(diff), where=width > 0)
