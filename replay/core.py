"""One replay as a sans-I/O state machine: tier topic records in, messages out through a ``ReplaySink``.

The I/O layer reads each partition from ``read_from_ms`` (via ``offsets_for_times``) in offset order and
hands the records to ``push``; it calls ``tick`` with the wall clock and sends what the sink gets. The
core merges the partitions into exact event-time order (``EventTimeMerge``), builds the as-of snapshot at
``from`` (the latest record of every entity inside the filter, records past their ``expires_at`` marked
``"state": "stale"``), then releases the deltas of ``[from, to)`` paced by the speed factor.

Messages (dicts; the caller encodes them):
  ``{"type": "replay_snapshot", "at": from, "records": [...]}`` once per (re)start, then
  ``{"type": "replay_delta", "seq": n, "t": ms, "records": [...], "remove": [...]}`` in event-time order,
  ``{"type": "replay_progress", "t": ms, "fraction": f, "records": n}`` about once a second of wall time,
  ``{"type": "replay_complete", "records": n, "late": n, "to": to}`` at the end.
``records`` are tier topic records as they are (``policy_version`` and ``crs`` included); ``remove`` names
entities that left the filter's area (their record is outside it, so it is not sent). With ``raw=True``
and no filter a delta carries ``raw``, the records' MessagePack bytes, instead of ``records``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np

from .batch import RecordBatch, key_text
from .merge import EventTimeMerge, SourceRecord
from .pacing import ReplayClock

STALE = "stale"
REMOVED = "removed"
MAX_SPEED = 1000.0
PROGRESS_EVERY_MS = 1000.0
FRAME_RECORDS = 500  # records per delta frame at most, so no frame grows without bound

Admit = Callable[[Sequence[dict[str, Any]]], Sequence[bool]]
"""Which of these records a replay's filter lets through (the live subscription filter)."""

_decode = msgspec.msgpack.Decoder(dict).decode
_decode_list = msgspec.msgpack.Decoder(list[dict[str, Any]]).decode


def decode_values(values: Iterable[bytes], n: int) -> list[dict[str, Any]]:
    """Decode ``n`` tier values in one call: their MessagePack maps spliced into one array."""
    return _decode_list(b"\xdd" + n.to_bytes(4, "big") + b"".join(values))


class ReplayError(ValueError):
    """A replay request that cannot be served; ``str(err)`` says why."""


def parse_speed(value: str | float | int | None) -> float | None:
    """``1``..``1000`` (a factor of the original pace) or ``"max"`` (None: as fast as the reader reads)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "max"):
        return None
    try:
        speed = float(str(value).strip().lower().removesuffix("x"))
    except ValueError:
        raise ReplayError(f"speed must be a number from 1 to 1000 or 'max', not {value!r}") from None
    if not 1.0 <= speed <= MAX_SPEED:
        raise ReplayError(f"speed must be from 1 to {MAX_SPEED:g} or 'max', not {value!r}")
    return speed


class ReplaySink(Protocol):
    def emit(self, message: dict[str, Any]) -> None: ...


class ReplayCore:
    def __init__(
        self,
        *,
        partitions: Iterable[int],
        from_ms: int,
        to_ms: int,
        max_skew_ms: int,
        lookback_ms: int,
        sink: ReplaySink,
        speed: float | None = None,
        admit: Admit | None = None,
        raw: bool = False,
    ) -> None:
        if to_ms <= from_ms:
            raise ReplayError("'to' must be after 'from'")
        self.partitions = sorted(partitions)
        self.from_ms, self.to_ms = int(from_ms), int(to_ms)
        self.max_skew_ms = int(max_skew_ms)
        self.lookback_ms = int(lookback_ms)  # how far before ``from`` a still-current entity's record can be
        self.sink = sink
        self.admit = admit
        # Without a filter, deltas may carry the tier values' MessagePack bytes as they are (``"raw"``
        # instead of ``"records"``) for a sink that can forward them without a decode.
        self.raw = raw
        self.clock = ReplayClock(speed)
        self.generation = 0  # bumped by ``seek``: the I/O layer must read again from ``read_from_ms``
        self.delivered = 0
        self.seq = 0
        self.finished = False
        self._restart(self.from_ms)

    # ------------------------------------------------------------------ what the I/O layer reads

    @property
    def read_from_ms(self) -> int:
        """Read every partition from the first record at or after this time (``offsets_for_times``)."""
        return self.start_ms - self.lookback_ms - self.max_skew_ms

    @property
    def read_to_ms(self) -> int:
        """A partition is finished once it shows a record at or after this time (or reaches its end)."""
        return self.to_ms + self.max_skew_ms

    @property
    def wants_records(self) -> bool:
        """False while enough is due: the I/O layer should stop fetching until ``tick`` drains it."""
        return self._due_count < 50_000

    @property
    def merge_full(self) -> bool:
        """The merge holds many records back: read only ``lagging_partitions`` until it releases them."""
        return self.merge.buffered >= 100_000

    def lagging_partitions(self) -> set[int]:
        return self.merge.lagging()

    @property
    def late(self) -> int:
        return self.merge.late

    # ------------------------------------------------------------------ input

    def push(self, partition: int, records: RecordBatch | Sequence[SourceRecord]) -> None:
        self.merge.push(partition, records)

    def finish(self, partition: int) -> None:
        self.merge.finish(partition)

    def tick(self, wall_ms: float) -> float | None:
        """Emit what is due at ``wall_ms``; returns when to tick next (wall ms), or None when finished."""
        if self.finished:
            return None
        self._absorb()
        if not self._snapshot_sent:
            if self.merge.watermark() < self.start_ms:
                return wall_ms + 50
            self._send_snapshot(wall_ms)
        self._send_due(wall_ms)
        if wall_ms - self._last_progress >= PROGRESS_EVERY_MS:
            self._progress(wall_ms)
        if self.merge.done and not self._due:
            self._complete()
            return None
        if self._due:
            due = self.clock.due_at(int(self._due[0].ts[0]))
            if due == float("inf"):
                return wall_ms + PROGRESS_EVERY_MS
            return max(wall_ms, min(due, self._last_progress + PROGRESS_EVERY_MS))
        return wall_ms + 50

    # ------------------------------------------------------------------ client controls

    def pause(self, wall_ms: float) -> None:
        self.clock.pause(wall_ms)

    def resume(self, wall_ms: float) -> None:
        self.clock.resume(wall_ms)

    def set_speed(self, speed: float | None, wall_ms: float) -> None:
        self.clock.set_speed(speed, wall_ms)

    def report(self, wall_ms: float) -> None:
        """A progress message now (e.g. right after a pause, so the client sees where it stopped)."""
        if self._snapshot_sent and not self.finished:
            self._progress(wall_ms)

    def seek(self, at_ms: int) -> None:
        """Start again at ``at_ms`` (within ``[from, to)``): a new snapshot there, then deltas from it."""
        if not self.from_ms <= at_ms < self.to_ms:
            raise ReplayError(f"seek target must be within [from, to), not {at_ms}")
        self.generation += 1
        self._restart(at_ms)

    # ------------------------------------------------------------------ inside

    def _restart(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.merge = EventTimeMerge(self.partitions, self.max_skew_ms)
        self.state: dict[str, bytes] = {}  # entity → its latest value before ``start_ms``
        self.inside: set[str] = set()  # entities the client holds (inside the filter)
        self._due: deque[RecordBatch] = deque()  # released records of [start, to), in event-time order
        self._due_count = 0
        self._snapshot_sent = False
        self._last_progress = float("-inf")
        self.finished = False

    def _absorb(self) -> None:
        released = self.merge.pop_ready()
        if not len(released):
            return
        ts = released.ts
        first = int(np.searchsorted(ts, self.start_ms, side="left"))
        end = int(np.searchsorted(ts, self.to_ms, side="left"))
        if first and not self._snapshot_sent:
            # Records before the start build the as-of state; once the snapshot is out, such a record
            # broke the skew bound (it is counted as late by the merge) and is dropped.
            state = self.state
            for key, value in zip(released.keys[:first].tolist(), released.values[:first].tolist(), strict=True):
                state[key_text(key)] = value
        if end > first:
            self._due.append(released[first:end])
            self._due_count += end - first

    def _send_snapshot(self, wall_ms: float) -> None:
        at = self.start_ms
        records: list[dict[str, Any]] = []
        for raw in self.state.values():
            value = _decode(raw)
            state = value.get("state")
            if state == REMOVED:
                continue
            expires = value.get("expires_at")
            if state != STALE and isinstance(expires, int) and expires <= at:
                value = {**value, "state": STALE}  # outlived its expires_at at ``at``: the live view marks it
            records.append(value)
        if self.admit is not None and records:
            records = [r for r, ok in zip(records, self.admit(records), strict=True) if ok]
        records.sort(key=lambda r: str(r.get("id", "")))
        self.inside = {str(r.get("id")) for r in records}
        self.state = {}
        self._snapshot_sent = True
        self.sink.emit({"type": "replay_snapshot", "at": at, "records": records})
        self.clock.start(at, wall_ms)

    def _send_due(self, wall_ms: float) -> None:
        due = self._due
        clock = self.clock
        while due:
            head = due[0]
            if clock.speed is None and not clock.paused:  # max: everything released is due
                n = min(len(head), FRAME_RECORDS)
            elif clock.paused:
                return
            else:  # the records whose wall time has come (their due times grow with their event times)
                n = int(np.searchsorted(clock.due_times(head.ts[:FRAME_RECORDS]), wall_ms, side="right"))
                if n == 0:
                    return
            if n == len(head):
                due.popleft()
                frame = head
            else:
                frame, due[0] = head[:n], head[n:]
            self._due_count -= n
            self._send_delta(frame)

    def _send_delta(self, batch: RecordBatch) -> None:
        last_t = int(batch.ts[-1])
        if self.admit is None and self.raw:
            self.clock.advance(last_t)
            self.seq += 1
            self.delivered += len(batch)
            self.sink.emit(
                {"type": "replay_delta", "seq": self.seq, "t": last_t, "raw": batch.values.tolist(), "remove": []}
            )
            return
        values = decode_values(batch.values, len(batch))
        if self.admit is None:  # no filter: every record goes, nothing can leave the filter's area
            self.clock.advance(last_t)
            self._frame(last_t, values, [])
            return
        admitted = self.admit(values)
        records: list[dict[str, Any]] = []
        remove: list[str] = []
        touched: set[str] = set()  # entities in this frame: a second change of one starts the next frame
        inside = self.inside
        stamps = batch.ts.tolist()
        t = stamps[0]
        for key, rec_t, value, ok in zip(batch.keys.tolist(), stamps, values, admitted, strict=True):
            entity = key_text(key)
            if value.get("state") == REMOVED:
                send, leave = entity in inside or ok, False
                inside.discard(entity)
            elif ok:
                send, leave = True, False
                inside.add(entity)
            else:
                send, leave = False, entity in inside
                inside.discard(entity)
            if not (send or leave):
                continue
            if entity in touched:
                self._frame(t, records, remove)
                records, remove, touched = [], [], set()
            touched.add(entity)
            t = rec_t
            if send:
                records.append(value)
            else:
                remove.append(entity)
        self.clock.advance(last_t)
        self._frame(t, records, remove)

    def _frame(self, t: int, records: list[dict[str, Any]], remove: list[str]) -> None:
        if not records and not remove:
            return
        self.seq += 1
        self.delivered += len(records)
        self.sink.emit({"type": "replay_delta", "seq": self.seq, "t": t, "records": records, "remove": remove})

    def _reached(self, wall_ms: float) -> int:
        if not self._snapshot_sent:
            return self.start_ms
        pos = self.clock.position(wall_ms)
        if self._due:
            pos = min(pos, int(self._due[0].ts[0]))
        return int(min(max(pos, self.start_ms), self.to_ms))

    def _progress(self, wall_ms: float) -> None:
        self._last_progress = wall_ms
        t = self._reached(wall_ms)
        self.sink.emit(
            {
                "type": "replay_progress",
                "t": t,
                "fraction": round((t - self.from_ms) / (self.to_ms - self.from_ms), 4),
                "records": self.delivered,
                "paused": self.clock.paused,
            }
        )

    def _complete(self) -> None:
        self.finished = True
        self.sink.emit(
            {"type": "replay_complete", "to": self.to_ms, "records": self.delivered, "late": self.merge.late}
        )
