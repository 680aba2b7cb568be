"""Log lines about one client connection, within that connection's ``LogBudget``: a client that sends
nothing but bad messages costs a few lines a minute, not gigabytes an hour."""

from __future__ import annotations

import logging
import time
from typing import Any

from .protocol.errors import ProtocolError
from .protocol.log_budget import LogBudget

log = logging.getLogger("ws_server.clients")

MAX_DETAIL = 200  # characters of a client-supplied reason kept in a line


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ClientLog:
    def __init__(self, who: str, lines_per_minute: int) -> None:
        self.who = who
        self.budget = LogBudget(lines_per_minute, 60_000)

    def write(self, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
        admitted, held = self.budget.admit(_now_ms())
        if held:
            self._summary(held)
        if admitted:
            log.log(level, f"client %s: {message}", self.who, *args, exc_info=exc_info)

    def refused(self, err: ProtocolError) -> None:
        """A message answered with an error: worth a line while the budget lasts."""
        self.write(logging.INFO, "%s: %s", err.code, err.message[:MAX_DETAIL])

    def close(self) -> None:
        held = self.budget.finish()
        if held:
            self._summary(held)

    def _summary(self, held: int) -> None:
        log.warning("client %s: suppressed %d log lines (over %d a minute)", self.who, held, self.budget.lines)
