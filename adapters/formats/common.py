"""Helpers shared by the format parsers: field access with clear reasons, times, coordinates, rejects."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import orjson

from geo import crs as geo_crs  # the transforms live in geo/, one implementation for the project
from schemas import InvalidRecord, Record, from_dict
from schemas.validity import TTL_MS as TTL_MS  # re-exported: the formats set expiry with these
from schemas.validity import valid_until as valid_until

from .result import ParseResult

BEIJING = timezone(timedelta(hours=8))


class ItemError(ValueError):
    """An item that cannot become a record; ``str(err)`` is the reason."""


JsonDict = dict[str, Any]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# orjson reads an integer beyond 64 bits as a float without a word, so a bad item's dead letter would not be what
# was received: a document with a run of 19 digits (the shortest such integer) goes to the stdlib instead.
# (Found by translating every digit to "0": a fifth of orjson's time, where a regular expression took three times it.)
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else b for b in range(256))
_NINETEEN_DIGITS = b"0" * 19


def may_hold_a_long_integer(data: bytes) -> bool:
    return _NINETEEN_DIGITS in bytes(data).translate(_DIGITS_AS_ZERO)


def load_json(data: bytes) -> Any:
    """Parse JSON or raise ItemError with the decoder's reason."""
    if may_hold_a_long_integer(data):
        try:
            return json.loads(data, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise ItemError(f"not valid JSON: {err}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        # orjson refuses some valid JSON (a lone surrogate escape, a number beyond a double): the stdlib judges.
        try:
            return json.loads(data, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ItemError(f"not valid JSON: {err}") from None


def item_bytes(item: Any) -> bytes:
    """The bytes of one item of a parsed response, for the DLQ (JSON of exactly what was received)."""
    try:
        return orjson.dumps(item)
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses integers beyond 64 bits; the stdlib keeps them.
        try:
            return json.dumps(item, ensure_ascii=False, default=repr).encode()
        except (TypeError, ValueError, RecursionError):
            return repr(item).encode("utf-8", "replace")


def require_dict(value: Any, what: str) -> JsonDict:
    if not isinstance(value, dict):
        raise ItemError(f"{what} is {type_name(value)}, expected an object")
    return value


def require_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ItemError(f"{what} is {type_name(value)}, expected an array")
    return value


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def as_number(value: Any, key: str) -> float:
    """A finite number; numeric strings are accepted because many sources quote their numbers."""
    if isinstance(value, bool) or value is None:
        raise ItemError(f"{key} is {type_name(value)}, expected a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ItemError(f"{key} is {value[:40]!r}, expected a number") from None
    else:
        raise ItemError(f"{key} is {type_name(value)}, expected a number")
    if not math.isfinite(number):
        raise ItemError(f"{key} is not a finite number")
    return number


def req_num(d: JsonDict, key: str) -> float:
    if key not in d:
        raise ItemError(f"missing {key}")
    return as_number(d[key], key)


def opt_num(d: JsonDict, key: str) -> float | None:
    value = d.get(key)
    return None if value is None else as_number(value, key)


INT64_LIMIT = 1 << 63  # records go to Kafka as MessagePack, whose integers stop at 64 bits


def as_int(value: Any, key: str) -> int:
    number = as_number(value, key)
    if not number.is_integer():
        raise ItemError(f"{key} is {number}, expected a whole number")
    whole = int(number)
    if not -INT64_LIMIT <= whole < INT64_LIMIT:
        raise ItemError(f"{key} is {number:g}, too large for a whole number")
    return whole


def req_int(d: JsonDict, key: str) -> int:
    if key not in d:
        raise ItemError(f"missing {key}")
    return as_int(d[key], key)


def opt_int(d: JsonDict, key: str) -> int | None:
    value = d.get(key)
    return None if value is None else as_int(value, key)


def req_str(d: JsonDict, key: str) -> str:
    value = d.get(key)
    if value is None:
        raise ItemError(f"missing {key}")
    return as_str(value, key)


def opt_str(d: JsonDict, key: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    text = as_str(value, key)
    return text or None


def as_str(value: Any, key: str) -> str:
    """Ids may arrive as numbers; booleans and containers are errors."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ItemError(f"{key} is {type_name(value)}, expected a string")


def beijing_time_ms(text: Any, key: str) -> int:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time (or ISO 8601 with a zone) → UTC epoch ms."""
    if not isinstance(text, str):
        raise ItemError(f"{key} is {type_name(text)}, expected a time string")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ItemError(f"{key} {text[:40]!r} is not a time like 2026-11-27 13:05:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING)
    return epoch_ms(moment)


def iso_time_ms(text: Any, key: str, *, naive_zone: tzinfo = UTC) -> int:
    """ISO 8601 (``Z`` or offset) → UTC epoch ms; a zoneless time is read in ``naive_zone``."""
    if not isinstance(text, str):
        raise ItemError(f"{key} is {type_name(text)}, expected a time string")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ItemError(f"{key} {text[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_zone)
    return epoch_ms(moment)


def epoch_ms(moment: datetime) -> int:
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise ItemError(f"time {moment.isoformat()} is out of range") from None


def crs_name(crs: Any) -> str:
    """A source's coordinate system label as geo/crs.py names it: ``GCJ-02`` and ``gcj_02`` are ``gcj02``,
    Baidu's ``bd09ll`` is ``bd09``; a label it does not know comes back as given, normalised."""
    name = str(crs).strip().lower().replace("-", "").replace("_", "") if crs is not None else "wgs84"
    return "bd09" if name == "bd09ll" else name


def on_globe(lng: float, lat: float) -> bool:
    return -180.0 <= lng <= 180.0 and -90.0 <= lat <= 90.0


# A point converted ahead, keyed by (crs_name, lng, lat) as published: see points.ItemPoints.
Converted = dict[tuple[str, float, float], tuple[float, float]]


def to_wgs84(lng: float, lat: float, crs: Any, converted: Converted | None = None) -> tuple[float, float]:
    """Convert a point published in ``crs`` (wgs84, gcj02, bd09) to WGS-84; ``converted`` holds points a
    whole list's array pass already converted."""
    name = crs_name(crs)
    if not on_globe(lng, lat):
        raise ItemError(f"coordinates ({lng}, {lat}) are outside the globe")
    if name == "wgs84":
        return lng, lat
    if converted is not None:
        done = converted.get((name, lng, lat))
        if done is not None:
            return done
    if name not in geo_crs.CRS_NAMES:
        raise ItemError(f"unknown coordinate system {crs!r} (expected wgs84, gcj02 or bd09)")
    out = geo_crs.convert(lng, lat, name, "wgs84")
    return float(out[0]), float(out[1])


def check_in_shanghai(lng: float, lat: float) -> None:
    if not geo_crs.plausibly_in_shanghai(lng, lat):
        raise ItemError(f"position ({lng:.6f}, {lat:.6f}) is outside Shanghai")


def build(feed: str, fields: JsonDict) -> Record:
    """Validate through the schema; drops None values so the record's defaults apply."""
    clean = {k: v for k, v in fields.items() if v is not None}
    try:
        return from_dict(feed, clean)
    except InvalidRecord as err:
        raise ItemError(f"invalid {feed} record: {err}") from None


def build_present(feed: str, fields: JsonDict) -> Record:
    """``build`` for a caller that only put present (non-None) values in ``fields``."""
    try:
        return from_dict(feed, fields)
    except InvalidRecord as err:
        raise ItemError(f"invalid {feed} record: {err}") from None


ParseFn = Callable[..., ParseResult]


def _whole_response_reject(data: Any, err: Exception, *, source: str, feed: str, received_at_ms: int) -> ParseResult:
    result = ParseResult()
    result.reject(
        bytes(data) if isinstance(data, bytes | bytearray | memoryview) else repr(data).encode(),
        source=source,
        feed=feed,
        reason=f"parser error {type(err).__name__}: {err}",
        received_at_ms=received_at_ms,
    )
    return result


def never_raises(feed: str, *, mode_is_feed: bool = True) -> Callable[[ParseFn], ParseFn]:
    """Last line of defence: an unexpected error in a parser becomes a whole-response reject. GTFS-RT
    parsers take the feed as ``mode``, except where ``mode_is_feed`` is False (arrivals: bus or metro trips,
    one feed)."""

    def wrap(fn: ParseFn) -> ParseFn:
        @functools.wraps(fn)
        def parse(data: bytes, *, source: str, received_at_ms: int, **options: Any) -> ParseResult:
            try:
                return fn(data, source=source, received_at_ms=received_at_ms, **options)
            except Exception as err:  # deliberate: the contract is that no input can crash ingest
                which = str((mode_is_feed and options.get("mode")) or feed)
                return _whole_response_reject(data, err, source=source, feed=which, received_at_ms=received_at_ms)

        return parse

    return wrap


ChunksFn = Callable[..., Iterator[ParseResult]]


def never_raises_chunks(feed: str) -> Callable[[ChunksFn], ChunksFn]:
    """``never_raises`` for a parser that yields its result in chunks. An error after some chunks were
    yielded rejects the whole response too: its records already handed on are then also in the dead
    letter's bytes, which loses nothing."""

    def wrap(fn: ChunksFn) -> ChunksFn:
        @functools.wraps(fn)
        def chunks(data: bytes, *, source: str, received_at_ms: int, **options: Any) -> Iterator[ParseResult]:
            try:
                yield from fn(data, source=source, received_at_ms=received_at_ms, **options)
            except Exception as err:  # deliberate, as in never_raises
                yield _whole_response_reject(data, err, source=source, feed=feed, received_at_ms=received_at_ms)

        return chunks

    return wrap
