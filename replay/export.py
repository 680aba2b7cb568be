"""Replay exports: the records a replay sends, written as NDJSON, CSV or Parquet (chosen by the file's
extension). Columns of CSV and Parquet are the tier's published record schema (``docs/record-schemas.md``);
lists and objects are JSON text. The as-of snapshot's records come first when asked for."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow.parquet as pq

from archive.columns import RecordColumns

from .core import ReplayError

FORMATS = (".ndjson", ".jsonl", ".csv", ".parquet")


class Export:
    def __init__(self, path: Path, record_schema: dict[str, Any]) -> None:
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise ReplayError(f"--out must end in .ndjson, .csv or .parquet, not {path.name!r}")
        self.path = path
        self.kind = "ndjson" if suffix in (".ndjson", ".jsonl") else suffix.removeprefix(".")
        self.columns = RecordColumns(record_schema)
        self.records = 0
        self._fh: IO[Any] | None = None
        self._csv: Any = None
        self._parquet: pq.ParquetWriter | None = None
        if self.kind == "parquet":
            self._parquet = pq.ParquetWriter(path, self.columns.record_schema, compression="zstd")
        elif self.kind == "csv":
            self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close())
            self._csv = csv.writer(self._fh)
            self._csv.writerow([name for name, _, _ in self.columns.fields])
        else:
            self._fh = open(path, "wb")  # noqa: SIM115 (closed in close())

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.records += len(records)
        if self._parquet is not None:
            self._parquet.write_table(self.columns.values_table(records))
        elif self._csv is not None:
            self._csv.writerows(self.columns.text_row(r) for r in records)
        elif self._fh is not None:
            self._fh.write(b"".join(orjson.dumps(r) + b"\n" for r in records))

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None
