"""Usage per key, agreement and feed, added up in memory and handed to the store in batches, so counting
costs the delivery path a few additions. No I/O."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

METRICS = ("messages", "records", "bytes", "sessions", "replays")
ALL_FEEDS = "*"  # sessions are counted per key, not per feed


class UsageLedger:
    """Increments since the last ``drain``, per (key id, agreement id, feed)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str, str], list[int]] = {}

    def add(self, key_id: str, agreement_id: str | None, feed: str, **counts: int) -> None:
        row = self._pending.setdefault((key_id, agreement_id or "", feed), [0] * len(METRICS))
        for name, value in counts.items():
            row[METRICS.index(name)] += value

    def drain(self) -> dict[tuple[str, str, str], dict[str, int]]:
        out = {k: {m: v for m, v in zip(METRICS, row, strict=True) if v} for k, row in self._pending.items()}
        self._pending = {}
        return {k: v for k, v in out.items() if v}

    def pending_messages(self, key_id: str) -> int:
        return sum(row[0] for (k, _a, _f), row in self._pending.items() if k == key_id)


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["day", "key_id", "agreement_id", "feed", *METRICS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row.get(name, 0 if name in METRICS else "") for name in writer.fieldnames})
    return out.getvalue()
