"""A per-connection budget of log lines, so one misbehaving client cannot fill the disk.

Each connection may write at most ``lines`` log lines per ``window_ms``; lines beyond that are counted,
not written, and the count is reported once, as a single summary line, when the next line is admitted
in a later window or the connection ends. Sans-I/O: it decides, the caller writes.
"""

from __future__ import annotations


class LogBudget:
    __slots__ = ("_suppressed", "_used", "_window_start", "lines", "window_ms")

    def __init__(self, lines: int = 20, window_ms: int = 60_000) -> None:
        self.lines = lines
        self.window_ms = window_ms
        self._window_start: int | None = None
        self._used = 0
        self._suppressed = 0

    def admit(self, now_ms: int) -> tuple[bool, int]:
        """Whether to write this line, and how many earlier lines were held back and not yet reported
        (report those first, in one line, when the number is not 0)."""
        if self._window_start is None or now_ms - self._window_start >= self.window_ms:
            self._window_start = now_ms
            self._used = 0
        if self._used < self.lines:
            self._used += 1
            held, self._suppressed = self._suppressed, 0
            return True, held
        self._suppressed += 1
        return False, 0

    def finish(self) -> int:
        """Lines held back and not yet reported (for a last summary when the connection ends)."""
        held, self._suppressed = self._suppressed, 0
        return held
