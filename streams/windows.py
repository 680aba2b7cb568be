"""Windowed tiers: hold a feed's records until their whole window is in, then release it. Pure, no I/O.

Some tier views are only right over every record of a time window: the charging sessions' station-hours,
where a group smaller than k is suppressed and the public tiers see per-station hourly aggregates. A
batch of the clean stage holds an arbitrary slice of an hour, so the policy cannot run there. Instead the
clean stage writes each clean record to ``pending.<tier>.<feed>`` keyed by its group (the station) with
its window's end as timestamp (``pending_row``); all records of one group and window then share a
partition and a due time. The delay stage hands the due envelopes of a partition to ``WindowGate``, which
releases a window only once the partition has moved past it (a later window follows, or nothing more
arrived for ``QUIET_MS``: when a window becomes due its records arrived long before, but a replayed
backlog is all due at once and still being written), in offset order, so the commit offset never passes a
held record. A record that arrives after
its group's window was released is late: it is reported, not merged into a second, partial aggregate.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .envelope import Row
from .policy import Window

QUIET_MS = 3000


def pending_row(window: Window, record: dict[str, Any], value: bytes) -> Row | None:
    """The pending-topic row of a clean record of a windowed tier: (group key, value, window end); None if
    the record has no group or time to window by (the policy drops such records at that tier too)."""
    group = record.get(window.by)
    end = window.end_of(record)
    if group is None or end is None:
        return None
    return str(group).encode(), value, end


@dataclass
class _Carried:
    next_offset: int  # offset after the envelope, the commit position once it is released
    window_end: int
    rows: list[Row]


@dataclass
class Release:
    rows: list[Row] = field(default_factory=list)  # on time, in offset order
    late: list[Row] = field(default_factory=list)  # their group's window was already released
    commit: int | None = None  # next offset to commit for the partition, None if nothing was released

    def extend(self, other: Release) -> None:
        self.rows += other.rows
        self.late += other.late


class WindowGate:
    """Due envelopes of one tier and feed, per partition, until their windows are complete."""

    def __init__(self, quiet_ms: int = QUIET_MS) -> None:
        self.quiet_ms = quiet_ms
        self.carry: dict[Hashable, list[_Carried]] = {}
        self.last_added: dict[Hashable, int] = {}  # partition → when it last got an envelope
        # group key → end of the newest window released for it (persisted, see ``marks``)
        self.released: dict[bytes, int] = {}

    def add(self, partition: Hashable, next_offset: int, rows: list[Row], now: int) -> None:
        """A due envelope of ``partition`` (all its rows share one window: see ``envelope.pack``)."""
        if rows:
            self.carry.setdefault(partition, []).append(_Carried(next_offset, max(r[2] for r in rows), rows))
            self.last_added[partition] = now

    def take(self, partition: Hashable, complete: bool, now: int) -> Release:
        """Release the leading envelopes whose window is complete: every window older than the newest one
        carried, and the newest too when ``complete`` (the next record of the partition is not due yet, so it
        belongs to a later window) or when nothing was added for ``quiet_ms``."""
        carried = self.carry.get(partition, [])
        if not carried:
            return Release()
        complete = complete or now - self.last_added.get(partition, now) >= self.quiet_ms
        newest = max(c.window_end for c in carried)
        n = 0
        while n < len(carried) and (complete or carried[n].window_end < newest):
            n += 1
        if n == 0:
            return Release()
        out = Release(commit=carried[n - 1].next_offset)
        for c in carried[:n]:
            for row in c.rows:
                key, _, end = row
                if self.released.get(key, -1) >= end:
                    out.late.append(row)
                else:
                    out.rows.append(row)
        for key, _, end in out.rows:
            if end > self.released.get(key, -1):
                self.released[key] = end
        if n == len(carried):
            self.carry.pop(partition, None)
            self.last_added.pop(partition, None)
        else:
            del carried[:n]
        return out

    def marks(self, rows: Iterable[Row]) -> dict[bytes, bytes]:
        """What to persist for ``rows`` just released: group key → end of its newest released window."""
        return {key: b"%d" % self.released[key] for key, _, _ in rows}

    def remember(self, marks: Iterable[tuple[bytes, int]]) -> None:
        for key, end in marks:
            if end > self.released.get(key, -1):
                self.released[key] = end

    def forget(self, partitions: Iterable[Hashable], keys: Iterable[bytes]) -> None:
        """Drop what belongs to partitions this worker no longer owns (uncommitted: their new owner re-reads)."""
        for p in partitions:
            self.carry.pop(p, None)
            self.last_added.pop(p, None)
        for key in keys:
            self.released.pop(key, None)
