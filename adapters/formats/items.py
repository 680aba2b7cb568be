"""The one per-item loop of every format: one bad item is one reject with its own bytes, never the whole response.

Every format hands its items here with a builder for one item; the envelope around them (a Shanghai JSON
response, a GeoJSON collection, a GTFS-Realtime FeedMessage...) is the format's own business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from schemas import Record

from .common import ItemError, item_bytes
from .result import ParseResult

T = TypeVar("T")

# How to point at an item in its response (``data[3]``, ``entity[3] id='v7'``); None: the item is the
# whole response, so its reject carries no locator.
Locate = Callable[[int, T], str | None]


def in_list(name: str) -> Callable[[int, Any], str]:
    """The locator of the items of a JSON array called ``name``: ``name[index]``."""
    return lambda index, _item: f"{name}[{index}]"


def reason_of(err: Exception) -> str:
    if isinstance(err, ItemError):
        return str(err)
    # Not foreseen by the builder (an overflow from a time far past any calendar, say): still this item's.
    return f"parser error {type(err).__name__}: {err}"


def parse_items(
    items: Iterable[T],
    parse_item: Callable[[T, int], Record | list[Record] | None],
    *,
    source: str,
    feed: str,
    received_at_ms: int,
    where: str | Locate[T],
    original: Callable[[T], bytes] = item_bytes,
    result: ParseResult | None = None,
    start: int = 0,
) -> ParseResult:
    """Build a record from each item; ``parse_item`` gets the item and its index and returns None for an item
    that is not for this feed (a GTFS-RT alert in a positions feed), or a list when one item holds several
    records (a trip update's stops): they stand or fall together, as the item does.

    ``where``: the name of the JSON array the items came from, or how to point at one (asked only for a reject).
    ``original``: the bytes of one item for the dead letter (default: the item as JSON).
    ``start``: the index of the first item, when ``items`` is a slice of the response's list.
    """
    locate = in_list(where) if isinstance(where, str) else where
    result = ParseResult() if result is None else result
    for index, item in enumerate(items, start):
        try:
            record = parse_item(item, index)
        except Exception as err:  # deliberate: the builders are pure, so whatever one item raises is that item's
            result.reject(
                original(item),
                source=source,
                feed=feed,
                reason=reason_of(err),
                received_at_ms=received_at_ms,
                locator=locate(index, item),
            )
            continue
        if isinstance(record, list):
            result.records.extend(record)
        elif record is not None:
            result.records.append(record)
    return result


def parse_list(
    items: list[Any],
    list_name: str,
    parse_item: Callable[[Any, str], Record],
    *,
    source: str,
    feed: str,
    received_at_ms: int,
    result: ParseResult | None = None,
    start: int = 0,
) -> ParseResult:
    """``parse_items`` for a JSON array: ``parse_item`` gets each item and its name for reasons (``data[3]``)."""
    return parse_items(
        items,
        lambda item, index: parse_item(item, f"{list_name}[{index}]"),
        where=list_name,
        source=source,
        feed=feed,
        received_at_ms=received_at_ms,
        result=result,
        start=start,
    )
