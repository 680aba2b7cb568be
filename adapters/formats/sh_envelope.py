"""The envelope all Shanghai JSON sources share: ``{"code": 0, "updateTime": ..., "<list>": [...]}``.

A response is parsed in chunks of items (``parse_chunks``), so a poller can hand the first records of a
whole-fleet response to Kafka while it builds the rest; ``parse`` is the same chunks joined.

A format whose record depends on nothing but its item (``RepeatKey``) can be asked to skip the items the
runtime already holds the record of (``unchanged``): building a record is most of a poll's CPU, and a
whole-fleet body repeats most vehicles' last report (docs/benchmarks-adapters.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from schemas import Record

from .common import (
    ChunksFn,
    ItemError,
    JsonDict,
    ParseFn,
    beijing_time_ms,
    item_bytes,
    load_json,
    never_raises,
    never_raises_chunks,
    require_dict,
    require_list,
)
from .items import parse_items
from .points import ItemPoints
from .result import ParseResult

# item, response time, source name, the WGS-84 points of the item's chunk
RecordBuilder = Callable[[JsonDict, int | None, str, ItemPoints], Record]
# Items per chunk: small enough that the first records of a 14,000-bus response leave within a few tens of
# milliseconds, large enough that the array conversion of the chunk's points is worth its set-up.
CHUNK_ITEMS = 1000
# (feed, entity id, the item's JSON) → True when the runtime already holds the record this item would make
# and would not send it again (``ChangeFilter.unchanged``): the item is then not built.
Unchanged = Callable[[str, str, bytes], bool]


@dataclass(frozen=True)
class RepeatKey:
    """Where an item's entity id and its own time are. Only for formats whose record is a function of the
    item alone once the item has a time of its own (the response's time only stands in for a missing one,
    and the expiry follows from the item's time), so an item equal to an earlier one makes the same record."""

    id_key: str
    time_key: str

    def entity(self, item: Any) -> str | None:
        """The id the record would have (ids may arrive as numbers), or None when the item cannot be
        recognised: it has no id or no time of its own."""
        if not isinstance(item, dict) or item.get(self.time_key) is None:
            return None
        ident = item.get(self.id_key)
        if isinstance(ident, str):
            return ident
        if isinstance(ident, int) and not isinstance(ident, bool):
            return str(ident)
        return None


def _to_build(
    chunk: list[Any], start: int, feed: str, repeat: RepeatKey | None, unchanged: Unchanged | None, result: ParseResult
) -> list[tuple[int, Any, bytes]]:
    """The chunk's items to build, as (index, item, the item's JSON or b"" when it cannot be recognised);
    the ids of the items ``unchanged`` says need no record go to ``result.unchanged``."""
    if repeat is None or unchanged is None:
        return [(index, item, b"") for index, item in enumerate(chunk, start)]
    out = []
    for index, item in enumerate(chunk, start):
        entity = repeat.entity(item)
        if entity is None:
            out.append((index, item, b""))
            continue
        text = item_bytes(item)
        if unchanged(feed, entity, text):
            result.unchanged.append(entity)
        else:
            out.append((index, item, text))
    return out


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
    repeat: RepeatKey | None = None,
    unchanged: Unchanged | None = None,
) -> Iterator[ParseResult]:
    """Items built chunk by chunk; a bad item is one reject, a bad envelope rejects the whole response. With
    ``repeat`` and ``unchanged``, an item the runtime already holds the record of is not built, and each
    record's item JSON goes with it (``ParseResult.item_json``) for the runtime to remember."""
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
    keep_json = repeat is not None and unchanged is not None
    for start in range(0, len(items), chunk_items):
        result = ParseResult()
        todo = _to_build(items[start : start + chunk_items], start, feed, repeat, unchanged, result)
        points = ItemPoints([item for _, item, _ in todo])

        def parse_item(
            entry: tuple[int, Any, bytes], _: int, points: ItemPoints = points, result: ParseResult = result
        ) -> Record:
            index, item, text = entry
            record = build_record(require_dict(item, f"{list_key}[{index}]"), header_ms, source, points)
            if keep_json:
                result.item_json.append(text)  # in step with the record parse_items appends next
            return record

        yield parse_items(
            todo,
            parse_item,
            where=lambda _, entry: f"{list_key}[{entry[0]}]",
            original=lambda entry: item_bytes(entry[1]),
            source=source,
            feed=feed,
            received_at_ms=received_at_ms,
            result=result,
        )


def joined(chunks: Iterator[ParseResult]) -> ParseResult:
    result = ParseResult()
    for chunk in chunks:
        result.extend(chunk)
    return result


def envelope_parser(
    feed: str, *, list_key: str, time_key: str, build_record: RecordBuilder, repeat: RepeatKey | None = None
) -> tuple[ParseFn, ChunksFn]:
    """The ``parse`` and ``parse_chunks`` functions of one Shanghai format: the shared envelope around its
    own item builder. With ``repeat``, ``parse_chunks`` takes ``unchanged`` (see ``envelope_chunks``)."""

    def chunks(
        data: bytes, *, source: str, received_at_ms: int, unchanged: Unchanged | None = None
    ) -> Iterator[ParseResult]:
        return envelope_chunks(
            data,
            source=source,
            feed=feed,
            received_at_ms=received_at_ms,
            list_key=list_key,
            time_key=time_key,
            build_record=build_record,
            repeat=repeat,
            unchanged=unchanged,
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
