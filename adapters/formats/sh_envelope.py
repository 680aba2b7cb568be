"""The envelope all Shanghai JSON sources share: ``{"code": 0, "updateTime": ..., "<list>": [...]}``.

A response is parsed in chunks of items (``parse_chunks``), so a poller can hand the first records of a
whole-fleet response to Kafka while it builds the rest; ``parse`` is the same chunks joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from schemas import Record

from .common import (
    ChunksFn,
    ItemError,
    JsonDict,
    ParseFn,
    beijing_time_ms,
    load_json,
    never_raises,
    never_raises_chunks,
    require_dict,
    require_list,
)
from .items import parse_list
from .points import ItemPoints
from .result import ParseResult

# item, response time, source name, the WGS-84 points of the item's chunk
RecordBuilder = Callable[[JsonDict, int | None, str, ItemPoints], Record]
# Items per chunk: small enough that the first records of a 14,000-bus response leave within a few tens of
# milliseconds, large enough that the array conversion of the chunk's points is worth its set-up.
CHUNK_ITEMS = 1000


def envelope_chunks(
    data: bytes,
    *,
    source: str,
    feed: str,
    received_at_ms: int,
    list_key: str,
    time_key: str,
    build_record: RecordBuilder,
    chunk_items: int = CHUNK_ITEMS,
) -> Iterator[ParseResult]:
    """Items built chunk by chunk; a bad item is one reject, a bad envelope rejects the whole response."""
    try:
        payload = require_dict(load_json(data), "the response")
        code = payload.get("code", 0)
        if code not in (0, "0"):
            message = payload.get("msg") or payload.get("message") or ""
            raise ItemError(f"upstream error code {code!r} {str(message)[:200]}".rstrip())
        items = require_list(payload.get(list_key), list_key)
        header_ms = beijing_time_ms(payload[time_key], time_key) if payload.get(time_key) else None
    except ItemError as err:
        result = ParseResult()
        result.reject(data, source=source, feed=feed, reason=str(err), received_at_ms=received_at_ms)
        yield result
        return
    for start in range(0, len(items), chunk_items):
        chunk = items[start : start + chunk_items]
        points = ItemPoints(chunk)

        def parse_item(item: Any, where: str, points: ItemPoints = points) -> Record:
            return build_record(require_dict(item, where), header_ms, source, points)

        yield parse_list(
            chunk,
            list_key,
            parse_item,
            source=source,
            feed=feed,
            received_at_ms=received_at_ms,
            start=start,
        )


def joined(chunks: Iterator[ParseResult]) -> ParseResult:
    result = ParseResult()
    for chunk in chunks:
        result.extend(chunk)
    return result


def envelope_parser(
    feed: str, *, list_key: str, time_key: str, build_record: RecordBuilder
) -> tuple[ParseFn, ChunksFn]:
    """The ``parse`` and ``parse_chunks`` functions of one Shanghai format: the shared envelope around its
    own item builder."""

    def chunks(data: bytes, *, source: str, received_at_ms: int) -> Iterator[ParseResult]:
        return envelope_chunks(
            data,
            source=source,
            feed=feed,
            received_at_ms=received_at_ms,
            list_key=list_key,
            time_key=time_key,
            build_record=build_record,
        )

    @never_raises(feed)
    def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
        return joined(chunks(data, source=source, received_at_ms=received_at_ms))

    return parse, never_raises_chunks(feed)(chunks)


def item_time_ms(item: JsonDict, key: str, header_ms: int | None) -> int:
    """An item's own time, else the response's; neither is a reject (we do not invent event times)."""
    value: Any = item.get(key)
    if value is not None:
        return beijing_time_ms(value, key)
    if header_ms is None:
        raise ItemError(f"missing {key} and no response time")
    return header_ms
