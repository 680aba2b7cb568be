"""Where archive files live and what their names say.

``<root>/feed=<feed>/tier=<tier>/date=<YYYY-MM-DD>/p<partition>-<first offset>-<last offset>.parquet``:
hive-style folders (DuckDB, pandas and Spark read ``feed``, ``tier`` and ``date`` as columns), the date in
Shanghai time of the records' event time. Offsets are zero-padded so names sort by offset. A file being
written has a ``.tmp`` name and is never read.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
_FILE = re.compile(r"^p(\d+)-(\d{20})-(\d{20})\.parquet$")


def day_of(timestamp_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp_ms / 1000.0, SHANGHAI).date()


def day_folder(root: Path, feed: str, tier: str, day: dt.date) -> Path:
    return root / f"feed={feed}" / f"tier={tier}" / f"date={day.isoformat()}"


def file_name(partition: int, first: int, last: int) -> str:
    return f"p{partition}-{first:020d}-{last:020d}.parquet"


@dataclass(frozen=True, slots=True, order=True)
class ArchiveFile:
    partition: int
    first: int  # first Kafka offset held
    last: int  # last Kafka offset held
    day: dt.date
    path: Path


def files_of(root: Path, feed: str, tier: str) -> list[ArchiveFile]:
    """Every finished archive file of one feed and tier, ordered by (partition, first offset)."""
    base = root / f"feed={feed}" / f"tier={tier}"
    out: list[ArchiveFile] = []
    if not base.is_dir():
        return out
    for folder in base.iterdir():
        if not folder.name.startswith("date="):
            continue
        try:
            day = dt.date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        for path in folder.iterdir():
            m = _FILE.match(path.name)
            if m:
                out.append(ArchiveFile(int(m[1]), int(m[2]), int(m[3]), day, path))
    out.sort()
    return out


def archived_to(files: list[ArchiveFile]) -> dict[int, int]:
    """Per partition, the offset after the last one archived: the archive holds every record before it."""
    out: dict[int, int] = {}
    for f in files:
        out[f.partition] = max(out.get(f.partition, 0), f.last + 1)
    return out
