"""Daily curves: how busy the city is at each hour, by kind of day.

Shapes follow the well-known patterns of Chinese megacities (morning and evening commuter peaks on
workdays, a broad midday plateau at weekends); magnitudes are plausible, not measured.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from adapters.simulators.daytypes import DayType

FloatArray = NDArray[np.float64]

Curve = tuple[tuple[float, ...], tuple[float, ...]]  # (hours, values), linearly interpolated, 0 and 24 included


def curve_at(curve: Curve, hours: ArrayLike) -> FloatArray:
    return np.interp(np.asarray(hours, dtype=np.float64), curve[0], curve[1])


# Bus passenger demand (share of a route's peak load).
BUS_DEMAND: dict[DayType, Curve] = {
    "workday": (
        (0, 5, 6, 7, 8, 9, 10, 12, 14, 16, 17, 18, 19, 20, 22, 24),
        (0.10, 0.12, 0.40, 0.85, 0.95, 0.65, 0.45, 0.50, 0.45, 0.60, 0.90, 0.85, 0.55, 0.40, 0.20, 0.10),
    ),
    "weekend": (
        (0, 6, 8, 10, 12, 15, 17, 19, 21, 24),
        (0.10, 0.20, 0.40, 0.60, 0.62, 0.65, 0.62, 0.50, 0.30, 0.10),
    ),
    "holiday": (
        (0, 6, 8, 10, 12, 15, 17, 19, 21, 24),
        (0.10, 0.20, 0.45, 0.70, 0.75, 0.78, 0.70, 0.55, 0.35, 0.12),
    ),
}

# Road congestion as a speed factor on the free-running timetable (peaks slower, nights faster).
# Piecewise constant, so the integral ("warped time") has a closed form.
CONGESTION_BREAKS_H: tuple[float, ...] = (0.0, 5.0, 7.0, 9.5, 16.5, 19.5, 22.0, 24.0)
CONGESTION_FACTOR: tuple[float, ...] = (1.30, 1.15, 0.78, 0.95, 0.75, 1.00, 1.20)


def _congestion_table() -> tuple[FloatArray, FloatArray, float]:
    breaks_s = np.asarray(CONGESTION_BREAKS_H) * 3600.0
    widths = np.diff(breaks_s)
    cumulative = np.concatenate([[0.0], np.cumsum(widths * np.asarray(CONGESTION_FACTOR))])
    return breaks_s, cumulative, float(cumulative[-1])


_BREAKS_S, _CUMULATIVE, _DAY_WARPED = _congestion_table()


def congestion_factor(hours: ArrayLike) -> FloatArray:
    idx = np.searchsorted(np.asarray(CONGESTION_BREAKS_H), np.asarray(hours, dtype=np.float64), side="right") - 1
    idx = np.clip(idx, 0, len(CONGESTION_FACTOR) - 1)
    return np.asarray(CONGESTION_FACTOR)[idx]


def warped_seconds(local_epoch_s: ArrayLike) -> FloatArray:
    """∫ congestion factor dt from the epoch, on Beijing-local seconds: vehicles' progress clock."""
    t = np.asarray(local_epoch_s, dtype=np.float64)
    days = np.floor(t / 86_400.0)
    within = t - days * 86_400.0
    return days * _DAY_WARPED + np.interp(within, _BREAKS_S, _CUMULATIVE)


def real_seconds(warped: ArrayLike) -> FloatArray:
    """The inverse of ``warped_seconds``: the Beijing-local second at which the progress clock reads ``warped``
    (every congestion factor is positive, so the clock never stands still and the inverse is exact)."""
    w = np.asarray(warped, dtype=np.float64)
    days = np.floor(w / _DAY_WARPED)
    within = w - days * _DAY_WARPED
    return days * 86_400.0 + np.interp(within, _CUMULATIVE, _BREAKS_S)
