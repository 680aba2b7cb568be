"""A fixed metric grid over Shanghai for snapping WGS-84 points to cell centres.

Projection: equirectangular on a sphere of radius ``EARTH_RADIUS_M`` with the x scale fixed at
``REF_LAT`` = 30.65° N, Shanghai's southern edge, and the origin at (120.80° E, 30.65° N). North–south
cells are exactly ``cell_m`` long; east–west they are ``cell_m × cos(lat) / cos(30.65°)``, which is at most
``cell_m`` everywhere in the municipality (down to 0.988 × at Chongming's northern shore). So a snapped
point is never farther than half the nominal cell diagonal from the original, measured on the sphere.

Cells of a size that divides another's (10 m and 50 m) nest exactly, because they share the origin:
snapping a 10 m centre onto the 50 m grid gives the same cell as snapping the original point.
A point exactly on an edge belongs to the cell above/right of it (``floor``), so the result is stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

EARTH_RADIUS_M: Final = 6_371_008.8
ORIGIN_LNG: Final = 120.80
ORIGIN_LAT: Final = 30.65
REF_LAT: Final = 30.65

_M_PER_DEG_LAT: Final = EARTH_RADIUS_M * math.pi / 180.0
_M_PER_DEG_LNG: Final = _M_PER_DEG_LAT * math.cos(math.radians(REF_LAT))


def _check_cell(cell_m: float) -> None:
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise ValueError(f"grid cell size must be a positive number of metres, got {cell_m!r}")


def snap(lng: float, lat: float, cell_m: float) -> tuple[float, float]:
    """The centre of the ``cell_m`` grid cell holding the WGS-84 point (lng, lat)."""
    _check_cell(cell_m)
    x = (lng - ORIGIN_LNG) * _M_PER_DEG_LNG
    y = (lat - ORIGIN_LAT) * _M_PER_DEG_LAT
    cx = (math.floor(x / cell_m) + 0.5) * cell_m
    cy = (math.floor(y / cell_m) + 0.5) * cell_m
    return ORIGIN_LNG + cx / _M_PER_DEG_LNG, ORIGIN_LAT + cy / _M_PER_DEG_LAT


def snap_arrays(lngs: ArrayLike, lats: ArrayLike, cell_m: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Vectorised ``snap``."""
    _check_cell(cell_m)
    x = np.asarray(lngs, dtype=np.float64)
    y = np.asarray(lats, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"lngs and lats differ in shape: {x.shape} vs {y.shape}")
    # Same operation order as ``snap`` so scalar and vector results agree bit for bit.
    cx = (np.floor((x - ORIGIN_LNG) * _M_PER_DEG_LNG / cell_m) + 0.5) * cell_m
    cy = (np.floor((y - ORIGIN_LAT) * _M_PER_DEG_LAT / cell_m) + 0.5) * cell_m
    return ORIGIN_LNG + cx / _M_PER_DEG_LNG, ORIGIN_LAT + cy / _M_PER_DEG_LAT


@dataclass(frozen=True, slots=True)
class Lattice:
    """Points that are cell centres, as indices into the grid's columns and rows present: point ``k`` is
    ``(lngs[cols[k]], lats[rows[k]])``. Work that depends on the longitude alone or the latitude alone is
    then done once per column or row instead of once per point (``geo.crs.wgs84_to_gcj02_lattice``)."""

    lngs: NDArray[np.float64]  # the centre longitude of each column present, west to east
    lats: NDArray[np.float64]  # the centre latitude of each row present, south to north
    cols: NDArray[np.intp]
    rows: NDArray[np.intp]


def lattice_of(lngs: ArrayLike, lats: ArrayLike, cell_m: float, max_axis: int = 1 << 16) -> Lattice | None:
    """The ``Lattice`` of points that are all centres of ``cell_m`` cells (what ``snap_arrays`` returns, bit
    for bit), or None if one is not (or is not finite), or if they span more than ``max_axis`` columns or rows
    (points strewn over a continent, where per-axis work would not pay)."""
    _check_cell(cell_m)
    x = np.asarray(lngs, dtype=np.float64)
    y = np.asarray(lats, dtype=np.float64)
    if x.size == 0 or x.shape != y.shape or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    # A centre lies mid-cell, so flooring it again finds its own cell.
    col = np.floor((x - ORIGIN_LNG) * _M_PER_DEG_LNG / cell_m)
    row = np.floor((y - ORIGIN_LAT) * _M_PER_DEG_LAT / cell_m)
    c0, c1, r0, r1 = col.min(), col.max(), row.min(), row.max()
    if c1 - c0 >= max_axis or r1 - r0 >= max_axis:
        return None
    # The axes with the same operations as ``snap_arrays``, so a centre and its axis value are equal floats.
    axis_lngs = ORIGIN_LNG + ((np.arange(c0, c1 + 1) + 0.5) * cell_m) / _M_PER_DEG_LNG
    axis_lats = ORIGIN_LAT + ((np.arange(r0, r1 + 1) + 0.5) * cell_m) / _M_PER_DEG_LAT
    cols = (col - c0).astype(np.intp)
    rows = (row - r0).astype(np.intp)
    if not (np.array_equal(axis_lngs[cols], x) and np.array_equal(axis_lats[rows], y)):
        return None  # not centres of this grid: the caller takes the general path
    return Lattice(axis_lngs, axis_lats, cols, rows)


def cell_of(lng: float, lat: float, cell_m: float) -> tuple[int, int]:
    """Integer (column, row) of the cell holding the point; equal for all points ``snap`` maps together."""
    _check_cell(cell_m)
    x = (lng - ORIGIN_LNG) * _M_PER_DEG_LNG
    y = (lat - ORIGIN_LAT) * _M_PER_DEG_LAT
    return math.floor(x / cell_m), math.floor(y / cell_m)


def haversine_m(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Great-circle distance in metres on the same sphere the grid uses."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def local_metres(
    lngs: ArrayLike, lats: ArrayLike, lng0: float, lat0: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """East/north offsets in metres from (lng0, lat0), scaled at lat0: accurate to ~0.1 % within 10 km."""
    x = np.asarray(lngs, dtype=np.float64)
    y = np.asarray(lats, dtype=np.float64)
    return (x - lng0) * _M_PER_DEG_LAT * math.cos(math.radians(lat0)), (y - lat0) * _M_PER_DEG_LAT
