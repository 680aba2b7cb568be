"""The simulated clock: simulated time = start + time_scale × (real time elapsed since the clock started)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime


class SimClock:
    """Simulated UTC time in epoch milliseconds, running ``time_scale`` times faster than real time.

    ``monotonic`` is injectable so tests can drive the clock by hand.
    """

    def __init__(
        self,
        start_ms: int | None = None,
        time_scale: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self.time_scale = float(time_scale)
        self._monotonic = monotonic
        self._real_start = monotonic()

    def now_ms(self) -> int:
        return self.start_ms + int((self._monotonic() - self._real_start) * 1000.0 * self.time_scale)

    def now_s(self) -> int:
        """Simulated time in whole seconds: the resolution of every timestamp the Shanghai formats carry."""
        return self.now_ms() // 1000


def parse_start(text: str) -> int:
    """Epoch ms from an ISO 8601 date-time; a time without a zone is Beijing time, as in the feeds."""
    from adapters.simulators.beijing import BEIJING

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING)
    return int(moment.timestamp() * 1000)
