"""The columns of an archive file: Kafka coordinates, the record's own top-level fields typed from the
published tier schema (so DuckDB or pandas can query them directly), and ``value``, the tier topic's exact
MessagePack bytes (so a replay from the archive sends exactly what Kafka held)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from replay.merge import SourceRecord
from streams.logic.fanout import decode_value

KAFKA_COLUMNS = [
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("key", pa.string(), nullable=False),
]
VALUE_COLUMN = pa.field("value", pa.binary(), nullable=False)
_SCALARS = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}
# The Python type a value of each column type already has when ``_fit`` would keep it as it is.
_EXACT: dict[pa.DataType, type] = {pa.int64(): int, pa.float64(): float, pa.string(): str, pa.bool_(): bool}


def _arrow_type(prop: dict[str, Any]) -> tuple[pa.DataType, bool]:
    """(type, as JSON text): one scalar type (or null) maps to itself; anything else is JSON text."""
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    if len(options) == 1:
        only = options[0]
        if "enum" in only and all(isinstance(v, str) for v in only["enum"]):
            return pa.string(), False
        kind = only.get("type")
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind], False
    return pa.string(), True


class RecordColumns:
    """Turns tier topic records into an Arrow table for one feed and tier's schema."""

    def __init__(self, record_schema: dict[str, Any]) -> None:
        self.fields: list[tuple[str, pa.DataType, bool]] = []
        for name, prop in record_schema["properties"].items():
            if name in ("partition", "offset", "timestamp", "key", "value"):
                continue  # never shadow the Kafka columns
            kind, as_json = _arrow_type(prop)
            self.fields.append((name, kind, as_json))
        self.schema = pa.schema([*KAFKA_COLUMNS, *(pa.field(n, t) for n, t, _ in self.fields), VALUE_COLUMN])
        self.record_schema = pa.schema([pa.field(n, t) for n, t, _ in self.fields])

    def table(self, records: Sequence[SourceRecord]) -> pa.Table:
        values = [decode_value(r.value) for r in records]
        columns: list[list[Any]] = [
            [r.partition for r in records],
            [r.offset for r in records],
            [r.timestamp for r in records],
            [r.key for r in records],
            *self._record_columns(values),
            [r.value for r in records],
        ]
        return pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, self.schema, strict=True)], schema=self.schema
        )

    def values_table(self, values: Sequence[dict[str, Any]]) -> pa.Table:
        """Decoded records only (an export): the record's fields, no Kafka coordinates."""
        columns = self._record_columns(values)
        return pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, self.record_schema, strict=True)],
            schema=self.record_schema,
        )

    def text_row(self, value: dict[str, Any]) -> list[str]:
        """One record as CSV cells: scalars as they are, lists and objects as JSON, absent as empty."""
        out: list[str] = []
        for name, _kind, _as_json in self.fields:
            x = value.get(name)
            out.append("" if x is None else x if isinstance(x, str) else orjson.dumps(x).decode())
        return out

    def _record_columns(self, values: Sequence[dict[str, Any]]) -> list[list[Any]]:
        columns: list[list[Any]] = []
        for name, kind, as_json in self.fields:
            col: list[Any]
            if as_json:
                col = [None if (x := v.get(name)) is None else orjson.dumps(x).decode() for v in values]
            else:
                # Per value and field, so only a value not already of the column's type goes through _fit,
                # which would return it unchanged: calling it for every value took most of the table's time.
                exact = _EXACT[kind]
                col = [x if (x := v.get(name)) is None or type(x) is exact else _fit(x, kind) for v in values]
            columns.append(col)
        return columns


def _fit(value: Any, kind: pa.DataType) -> Any:
    """A value the schema says is scalar but is not (a record from an older policy): kept as null."""
    if value is None:
        return None
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    if pa.types.is_boolean(kind):
        return value if isinstance(value, bool) else None
    if pa.types.is_integer(kind):
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if pa.types.is_floating(kind):
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return None
