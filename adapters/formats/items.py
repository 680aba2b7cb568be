"""The per-item loop of JSON formats: one bad item is one reject with its locator, never the whole batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import Record

from .common import ItemError, item_bytes
from .result import ParseResult


def parse_items(
    items: list[Any],
    *,
    list_name: str,
    source: str,
    feed: str,
    received_at_ms: int,
    parse_item: Callable[[Any, str], Record],
    result: ParseResult | None = None,
) -> ParseResult:
    result = result or ParseResult()
    for index, item in enumerate(items):
        where = f"{list_name}[{index}]"
        try:
            record = parse_item(item, where)
        except (ItemError, OverflowError) as err:
            result.reject(
                item_bytes(item),
                source=source,
                feed=feed,
                reason=str(err),
                received_at_ms=received_at_ms,
                locator=where,
            )
            continue
        result.records.append(record)
    return result
