"""The envelope all Shanghai JSON sources share: ``{"code": 0, "updateTime": ..., "<list>": [...]}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import Record

from .common import (
    ItemError,
    JsonDict,
    ParseFn,
    beijing_time_ms,
    load_json,
    never_raises,
    require_dict,
    require_list,
)
from .items import parse_list
from .result import ParseResult

ItemParser = Callable[[JsonDict, int | None], Record]
RecordBuilder = Callable[[JsonDict, int | None, str], Record]  # item, response time, source name


def parse_envelope(
    data: bytes,
    *,
    source: str,
    feed: str,
    received_at_ms: int,
    list_key: str,
    time_key: str,
    parse_item: ItemParser,
) -> ParseResult:
    """Parse items one by one; a bad item is one reject, a bad envelope rejects the whole response."""
    result = ParseResult()
    try:
        payload = require_dict(load_json(data), "the response")
        code = payload.get("code", 0)
        if code not in (0, "0"):
            message = payload.get("msg") or payload.get("message") or ""
            raise ItemError(f"upstream error code {code!r} {str(message)[:200]}".rstrip())
        items = require_list(payload.get(list_key), list_key)
        header_ms = beijing_time_ms(payload[time_key], time_key) if payload.get(time_key) else None
    except ItemError as err:
        result.reject(data, source=source, feed=feed, reason=str(err), received_at_ms=received_at_ms)
        return result
    return parse_list(
        items,
        list_key,
        lambda item, where: parse_item(require_dict(item, where), header_ms),
        source=source,
        feed=feed,
        received_at_ms=received_at_ms,
        result=result,
    )


def envelope_parser(feed: str, *, list_key: str, time_key: str, build_record: RecordBuilder) -> ParseFn:
    """The ``parse`` function of one Shanghai format: the shared envelope around its own item builder."""

    @never_raises(feed)
    def parse(data: bytes, *, source: str, received_at_ms: int) -> ParseResult:
        return parse_envelope(
            data,
            source=source,
            feed=feed,
            received_at_ms=received_at_ms,
            list_key=list_key,
            time_key=time_key,
            parse_item=lambda item, header_ms: build_record(item, header_ms, source),
        )

    return parse


def item_time_ms(item: JsonDict, key: str, header_ms: int | None) -> int:
    """An item's own time, else the response's; neither is a reject (we do not invent event times)."""
    value: Any = item.get(key)
    if value is not None:
        return beijing_time_ms(value, key)
    if header_ms is None:
        raise ItemError(f"missing {key} and no response time")
    return header_ms
