"""Decoding a GTFS-Realtime FeedMessage with the official bindings, shared by the VP and TU parsers."""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2

from .common import ItemError
from .result import ParseResult

# Buses and metro trains only; anything else is reported under the feed the source is configured for.
MODES = ("bus", "metro")


def decode_feed(data: bytes) -> gtfs_realtime_pb2.FeedMessage:
    message = gtfs_realtime_pb2.FeedMessage()
    try:
        message.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ItemError(f"not a GTFS-Realtime FeedMessage: {err}") from None
    # The Python bindings do not enforce proto2 "required": check the one that proves it is a feed.
    if not message.header.HasField("gtfs_realtime_version"):
        raise ItemError("not a GTFS-Realtime FeedMessage: header.gtfs_realtime_version is missing")
    return message


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ItemError(f"mode {mode!r} is not bus or metro")
    return str(mode)


def entity_bytes(entity: gtfs_realtime_pb2.FeedEntity) -> bytes:
    """One entity re-encoded on its own: the DLQ copy of a bad item in a binary feed."""
    try:
        return entity.SerializeToString()
    except Exception:  # a partially-initialised entity may refuse; its text form still says what it was
        return str(entity).encode("utf-8", "replace")


def entity_locator(index: int, entity: gtfs_realtime_pb2.FeedEntity) -> str:
    return f"entity[{index}] id={entity.id[:60]!r}"


def coordinate(value: float) -> float:
    """Protobuf coordinates are 32-bit floats: take the shortest decimal that is the same float32
    (what the producer wrote, e.g. 37.37046), not its float64 widening (37.370460510253906)."""
    return float(str(np.float32(value)))


def open_feed(
    data: bytes, *, source: str, received_at_ms: int, mode: str, result: ParseResult
) -> tuple[str, gtfs_realtime_pb2.FeedMessage] | None:
    """The feed name and decoded message, or None after rejecting the whole body (bad mode or bytes)."""
    try:
        feed = check_mode(mode)
        message = decode_feed(data)
    except ItemError as err:
        result.reject(
            data,
            source=source,
            feed=mode if mode in ("bus", "metro") else "bus",
            reason=str(err),
            received_at_ms=received_at_ms,
        )
        return None
    return feed, message
