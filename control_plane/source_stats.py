"""What an adapter tells the control plane: per source, every few seconds, a stats record with the
counts since the previous one and the latest times (see ``figures.source_record``).

Sent on a timer rather than per poll so a source that stalls (a poll that never returns) keeps being
reported: its figures stop moving while the adapter is plainly alive, which is what "stale" means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import schemas

from .emitter import StatsEmitter
from .figures import source_record

COUNTS = ("polls", "errors", "records", "rejects", "duplicates", "skipped")


class _Stats(Protocol):
    polls: int
    errors: int
    records: int
    rejects: int
    duplicates: int
    skipped: int
    last_success_ms: int | None
    last_record_ms: int | None
    last_error: str | None
    reject_reasons: dict[str, int]


class SourceReporter:
    def __init__(self, emitter: StatsEmitter, feeds: Mapping[str, str], intervals: Mapping[str, float]) -> None:
        self.emitter = emitter
        self.feeds = dict(feeds)
        self.intervals = dict(intervals)
        self._sent: dict[str, dict[str, Any]] = {}

    def report(self, stats: Mapping[str, _Stats], now_ms: int | None = None) -> int:
        """One record per source; returns how many were queued."""
        now = now_ms if now_ms is not None else schemas.now_ms()
        n = 0
        for name, s in stats.items():
            feed = self.feeds.get(name)
            if feed is None:
                continue
            before = self._sent.get(name, {})
            counts = {k: int(getattr(s, k)) for k in COUNTS}
            reasons = dict(s.reject_reasons)
            delta = {k: v - int(before.get(k, 0)) for k, v in counts.items()}
            old_reasons = before.get("rej", {})
            rej = {r: c - old_reasons.get(r, 0) for r, c in reasons.items() if c - old_reasons.get(r, 0) > 0}
            self._sent[name] = {**counts, "rej": reasons}
            self.emitter.emit(
                source_record(
                    name,
                    feed,
                    now,
                    self.intervals.get(name, 0.0),
                    **delta,
                    rej=rej,
                    last_success_ms=s.last_success_ms,
                    last_record_ms=s.last_record_ms,
                    last_error=s.last_error,
                )
            )
            n += 1
        return n

    async def run(self, stats: Callable[[], Mapping[str, _Stats]], every_s: float = 2.0) -> None:
        while True:
            self.report(stats())
            await asyncio.sleep(every_s)
