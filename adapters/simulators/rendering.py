"""Turning a feed's content at a simulated second into response bytes, with the feed's fault applied.

Pure: no clock and no I/O. The server decides the second and handles the faults that are about the
connection (stall, HTTP errors); everything that changes the bytes happens here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.simulators.beijing import format_local
from adapters.simulators.faults import Fault, duplicate_records, garbage_body, garbage_records

# A JSON feed's content: (records, epoch second of the newest record) at a second, with times skewed.
RecordSource = Callable[[int, int], tuple[list[dict[str, Any]], int]]
# A binary feed's content with its own record-level fault handling: (bytes, injected counts).
BinarySource = Callable[[int, "Fault | None", int], tuple[bytes, dict[str, int]]]


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    injected: dict[str, int] = field(default_factory=dict)  # e.g. {"garbage_records": 12}


@dataclass(frozen=True, slots=True)
class JsonFeed:
    """A Shanghai JSON format: ``{"code": 0, <time_key>: ..., <list_key>: [...]}``."""

    name: str
    path: str
    list_key: str
    id_key: str
    time_key: str
    source: RecordSource

    def render(self, t_s: int, fault: Fault | None, salt: int) -> Rendered:
        skew = fault.jump_s if fault is not None and fault.kind == "time_jump" else 0
        if fault is not None and fault.kind == "upstream_error":
            doc: dict[str, Any] = {"code": 500, "msg": "系统繁忙，请稍后再试", self.time_key: format_local(t_s + skew)}
            return Rendered(orjson.dumps(doc), "application/json; charset=utf-8", {"upstream_errors": 1})
        records, newest = self.source(t_s, skew)
        injected: dict[str, int] = {}
        if fault is not None and fault.kind == "duplicates":
            records, injected["duplicate_records"] = duplicate_records(records, fault.rate, salt)
        elif fault is not None and fault.kind == "garbage" and fault.mode == "records":
            records, injected["garbage_records"] = garbage_records(records, fault.rate, salt, self.id_key)
        # The envelope time is the newest record's, so the body (and its ETag) only changes with the data.
        body = orjson.dumps({"code": 0, self.time_key: format_local(newest + skew), self.list_key: records})
        if fault is not None and fault.kind == "garbage" and fault.mode == "body":
            body = garbage_body(body, salt)
            injected["garbage_bodies"] = 1
        return Rendered(body, "application/json; charset=utf-8", injected)


@dataclass(frozen=True, slots=True)
class BinaryFeed:
    """A feed whose renderer applies record-level faults itself (GTFS-Realtime protobuf)."""

    name: str
    path: str
    content_type: str
    source: BinarySource

    def render(self, t_s: int, fault: Fault | None, salt: int) -> Rendered:
        if fault is not None and fault.kind == "garbage" and fault.mode == "body":
            body, _ = self.source(t_s, None, salt)
            return Rendered(garbage_body(body, salt), self.content_type, {"garbage_bodies": 1})
        body, injected = self.source(t_s, fault, salt)
        return Rendered(body, self.content_type, injected)


Feed = JsonFeed | BinaryFeed
