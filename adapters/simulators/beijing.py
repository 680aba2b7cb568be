"""Beijing local time (UTC+8, no daylight saving): formatting and the local clock fields the curves use."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
from numpy.typing import ArrayLike, NDArray

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
OFFSET_S = 8 * 3600
DAY_S = 86_400


def format_local(epoch_s: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time, the way the Shanghai formats write times."""
    return datetime.fromtimestamp(epoch_s, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def format_many(epoch_s: ArrayLike) -> list[str]:
    """Format many epoch seconds; feeds repeat a few distinct seconds, so each is formatted once."""
    values = np.asarray(epoch_s, dtype=np.int64)
    uniques, inverse = np.unique(values, return_inverse=True)
    texts = [format_local(int(v)) for v in uniques]
    return [texts[i] for i in inverse.tolist()]


def local_hour(epoch_s: ArrayLike) -> NDArray[np.float64]:
    """Hour of the Beijing day as a float in [0, 24)."""
    return ((np.asarray(epoch_s, dtype=np.float64) + OFFSET_S) % DAY_S) / 3600.0


def local_date(epoch_s: int) -> date:
    return datetime.fromtimestamp(epoch_s, BEIJING).date()


def local_day_index(epoch_s: ArrayLike) -> NDArray[np.int64]:
    """Days since 1970-01-01 in Beijing time (a counter for per-day random draws)."""
    return np.floor_divide(np.asarray(epoch_s, dtype=np.int64) + OFFSET_S, DAY_S)


def utc_from_local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Epoch seconds of a Beijing wall-clock time (handy in tests and for --start)."""
    moment = datetime(year, month, day, hour, minute, tzinfo=BEIJING)
    return int(moment.astimezone(UTC).timestamp())
