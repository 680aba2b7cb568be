"""Times for replay requests: ISO 8601, Asia/Shanghai when no zone is given, or epoch milliseconds."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from .core import ReplayError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def parse_time(text: str | int, default_zone: dt.tzinfo = SHANGHAI) -> int:
    """Epoch ms of ``2026-12-04T08:30``, ``2026-12-04 08:30:00+08:00``, ``2026-12-04T00:30Z`` or ``1796...``."""
    if isinstance(text, int):
        return text
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ReplayError(f"not an ISO 8601 time: {text!r} (e.g. 2026-12-04T08:30, Shanghai time)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=default_zone)
    return int(when.timestamp() * 1000)


def format_time(ms: int, zone: dt.tzinfo = SHANGHAI) -> str:
    return dt.datetime.fromtimestamp(ms / 1000.0, zone).isoformat(timespec="seconds")
