"""Drives a ``ReplayCore`` from a record source in real time: reads while the core wants records, ticks
it when something is due, and wakes early when the client pauses, resumes, seeks or changes speed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .batch import RecordBatch
from .core import ReplayCore

READ_RECORDS = 50_000  # records per read at most: large batches, so the per-call costs are spread thin


class RecordSource(Protocol):
    partitions: list[int]

    async def open(self) -> list[int]: ...

    async def seek(self, from_ms: int, stop_ms: int, offsets: dict[int, int] | None = None) -> dict[int, int]: ...

    @property
    def exhausted(self) -> bool: ...

    def open_partitions(self) -> set[int]: ...

    async def read(
        self, timeout_ms: int = 200, max_records: int = READ_RECORDS, only: set[int] | None = None
    ) -> tuple[dict[int, RecordBatch], set[int]]: ...


class PartitionsToRead:
    """What every record source keeps: the partitions it has not finished reading since its last seek."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    @property
    def exhausted(self) -> bool:
        return not self._open

    def open_partitions(self) -> set[int]:
        return set(self._open)


def wall_ms() -> float:
    return time.monotonic() * 1000.0


class ReplayRunner:
    def __init__(
        self,
        core: ReplayCore,
        source: RecordSource,
        *,
        drain: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = wall_ms,
    ) -> None:
        self.core = core
        self.source = source
        self.drain = drain  # waits until the client has taken what was sent (flow control at max speed)
        self.clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Call after changing the core from outside (pause, resume, seek, speed)."""
        self._wake.set()

    async def run(self) -> None:
        core, source = self.core, self.source
        generation = -1
        while True:
            if core.generation != generation:
                generation = core.generation
                await source.seek(core.read_from_ms, core.read_to_ms)
                still_open = source.open_partitions()
                for p in core.partitions:
                    if p not in still_open:
                        core.finish(p)
            if core.wants_records and not source.exhausted:
                # With a full merge buffer, read only the partitions that hold its watermark back.
                only = core.lagging_partitions() if core.merge_full else None
                batches, finished = await source.read(timeout_ms=100, only=only)
                if core.generation != generation:
                    continue  # a seek happened meanwhile: these records belong to the old position
                for p, records in batches.items():
                    core.push(p, records)
                for p in finished:
                    core.finish(p)
            nxt = core.tick(self.clock())
            if self.drain is not None:
                await self.drain()
            if nxt is None:
                return
            if source.exhausted or not core.wants_records:
                delay = (nxt - self.clock()) / 1000.0
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(delay, 1.0))
            elif self._wake.is_set():
                self._wake.clear()
