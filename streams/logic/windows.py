"""Windowed tiers: hold a feed's records until their whole window is in, then release it. Pure, no I/O.

Some tier views are only right over every record of a time window: the charging sessions' station-hours,
where a group smaller than k is suppressed and the public tiers see per-station hourly aggregates. A
batch of the clean stage holds an arbitrary slice of an hour, so the policy cannot run there. Instead the
clean stage writes each clean record to ``pending.<tier>.<feed>`` keyed by its group (the station) with
its window's end as timestamp (``pending_row``), so one group's records share a partition.

The delay stage reads those partitions to their end, without pausing (records of two windows interleave
around a window's end) and hands every envelope to ``WindowGate``. A window is released when its end plus
the tier's delay has passed, the partition has been read to its end and nothing new arrived in it for
``QUIET_MS``: live, a window's records arrived long before it is due, but when the clean stage catches up on
a backlog (a replay, or after an outage) records fall due while their window is still being written.
Should a partition never go quiet, due windows are released anyway once they have waited ``MAX_WAIT_MS``
or the partition holds ``MAX_HELD_ROWS`` records (memory stays bounded during a long catch-up).
What arrives after its window was released is late. Late records are reported, never merged
into a second, partial aggregate. The commit offset stays at the oldest record not yet released, so a
crash re-reads what was held; ``decided`` (persisted with the release) tells such a replay from a record
that really came late.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.logic.envelope import Row
from streams.policy import Window

QUIET_MS = 3_000
MAX_WAIT_MS = 60_000
MAX_HELD_ROWS = 100_000  # per partition: about 17 hours of the city's sessions, a few tens of MB


def pending_row(window: Window, record: dict[str, Any], value: bytes) -> Row | None:
    """The pending-topic row of a clean record of a windowed tier: (group key, value, window end); None if
    the record has no group or time to window by (the policy drops such records at that tier too)."""
    group = record.get(window.by)
    end = window.end_of(record)
    if group is None or end is None:
        return None
    return str(group).encode(), value, end


@dataclass
class _Held:
    offset: int
    rows: list[Row]  # of one window (``envelope.pack`` never mixes windows: they are an hour apart)


@dataclass
class Release:
    rows: list[Row] = field(default_factory=list)  # on time
    late: list[Row] = field(default_factory=list)  # their group's window was already released
    commit: int | None = None  # next offset to commit for the partition, None if nothing changed
    decided: int | None = None  # offset up to which every record was seen when these windows were decided

    def extend(self, other: Release) -> None:
        self.rows += other.rows
        self.late += other.late


class WindowGate:
    """The records of one windowed tier and feed, per partition, until their windows are due."""

    def __init__(
        self,
        delay_ms: int,
        quiet_ms: int = QUIET_MS,
        max_wait_ms: int = MAX_WAIT_MS,
        max_held_rows: int = MAX_HELD_ROWS,
    ) -> None:
        self.delay_ms = delay_ms
        self.quiet_ms = quiet_ms
        self.max_wait_ms = max_wait_ms
        self.max_held_rows = max_held_rows
        self.held_rows: dict[Hashable, int] = {}  # partition → rows held
        self.last_added: dict[Hashable, int] = {}  # partition → when it last got an envelope
        self.waiting_since: dict[Hashable, int] = {}  # partition → since when a due window waits for quiet
        self.held: dict[Hashable, list[_Held]] = {}
        self.end: dict[Hashable, int] = {}  # partition → offset after the last envelope read
        self.late: dict[Hashable, list[Row]] = {}
        # group key → end of the newest window released for it (persisted, see ``marks``)
        self.released: dict[bytes, int] = {}
        # partition → offset below which every record was read when its windows were last released
        # (recovered after a restart: a released group's record below it is a replay, not a late one)
        self.decided: dict[Hashable, int] = {}

    def add(self, partition: Hashable, offset: int, rows: list[Row], now: int) -> None:
        """The envelope at ``offset`` of ``partition``, read in offset order at ``now``."""
        self.end[partition] = offset + 1
        self.last_added[partition] = now
        keep: list[Row] = []
        for row in rows:
            key, _, end = row
            if self.released.get(key, -1) >= end:
                if offset >= self.decided.get(partition, 0):
                    self.late.setdefault(partition, []).append(row)
                # else: read again after a restart, and already part of what was released
            else:
                keep.append(row)
        if keep:
            self.held.setdefault(partition, []).append(_Held(offset, keep))
            self.held_rows[partition] = self.held_rows.get(partition, 0) + len(keep)

    def take(self, partition: Hashable, now: int, caught_up: bool) -> Release:
        """Release every window of ``partition`` that is due at ``now``, once the partition was read to its
        end (``caught_up``) and went quiet; plus the late records found so far."""
        out = Release(late=self.late.pop(partition, []))
        held = self.held.get(partition, [])
        quiet = now - self.last_added.get(partition, now) >= self.quiet_ms
        if held and not quiet and any(row[2] + self.delay_ms <= now for h in held for row in h.rows):
            quiet = now - self.waiting_since.setdefault(partition, now) >= self.max_wait_ms
        # Too much held: release what is due now rather than grow without bound (a window still being
        # written then has its rest reported late, as after MAX_WAIT_MS).
        full = self.held_rows.get(partition, 0) >= self.max_held_rows
        if ((caught_up and quiet) or full) and held:
            remaining: list[_Held] = []
            for h in held:
                due = [row for row in h.rows if row[2] + self.delay_ms <= now]
                if due:
                    out.rows += due
                    rest = [row for row in h.rows if row[2] + self.delay_ms > now]
                    if rest:
                        remaining.append(_Held(h.offset, rest))
                else:
                    remaining.append(h)
            if out.rows:
                self.waiting_since.pop(partition, None)
                for key, _, end in out.rows:
                    if end > self.released.get(key, -1):
                        self.released[key] = end
                out.decided = self.end.get(partition, 0)
            if remaining:
                self.held[partition] = remaining
                self.held_rows[partition] = sum(len(h.rows) for h in remaining)
            else:
                self.held.pop(partition, None)
                self.held_rows.pop(partition, None)
        if out.rows or out.late:
            held_now = self.held.get(partition)
            out.commit = held_now[0].offset if held_now else self.end.get(partition)
        return out

    def marks(self, rows: Iterable[Row]) -> dict[bytes, bytes]:
        """What to persist for ``rows`` just released: group key → end of its newest released window."""
        return {key: b"%d" % self.released[key] for key, _, _ in rows}

    def remember(self, marks: Iterable[tuple[bytes, int]], decided: Iterable[tuple[Hashable, int]] = ()) -> None:
        for key, end in marks:
            if end > self.released.get(key, -1):
                self.released[key] = end
        for partition, offset in decided:
            self.decided[partition] = max(offset, self.decided.get(partition, 0))

    def forget(self, partitions: Iterable[Hashable], keys: Iterable[bytes]) -> None:
        """Drop what belongs to partitions this worker no longer owns (uncommitted: their new owner re-reads)."""
        for p in partitions:
            tables = (self.held, self.held_rows, self.end, self.late, self.decided, self.last_added, self.waiting_since)
            for table in tables:
                table.pop(p, None)
        for key in keys:
            self.released.pop(key, None)
