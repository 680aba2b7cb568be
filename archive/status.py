"""What the archive holds: per feed, tier and day, the files, records, bytes and Kafka offsets covered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from .layout import files_of


@dataclass
class DayStatus:
    feed: str
    tier: str
    day: str
    files: int = 0
    records: int = 0
    bytes: int = 0
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition → (first, last)


def archive_status(root: Path, feeds: list[str], tiers: list[str]) -> list[DayStatus]:
    out: list[DayStatus] = []
    for feed in feeds:
        for tier in tiers:
            days: dict[str, DayStatus] = {}
            for f in files_of(root, feed, tier):
                st = days.setdefault(f.day.isoformat(), DayStatus(feed, tier, f.day.isoformat()))
                st.files += 1
                st.bytes += f.path.stat().st_size
                st.records += pq.read_metadata(f.path).num_rows
                lo, hi = st.offsets.get(f.partition, (f.first, f.last))
                st.offsets[f.partition] = (min(lo, f.first), max(hi, f.last))
            out += [days[d] for d in sorted(days)]
    return out
