"""The wall clock in UTC epoch milliseconds, the unit of every record timestamp (``observed_at``,
``expires_at``) and of Kafka record timestamps."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
