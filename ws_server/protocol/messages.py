"""Client → server messages of protocol v1: their types and strict decoding.

Decoding never raises anything but ``ProtocolError`` with a code and a human-readable reason, so a bad
frame is answered with an ``error`` message instead of breaking the connection.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from .errors import BAD_ENCODING, INVALID_FILTER, INVALID_MESSAGE, ProtocolError

SubId = Annotated[str, Meta(min_length=1, max_length=64)]
Lng = Annotated[float, Meta(ge=-180.0, le=180.0)]
Lat = Annotated[float, Meta(ge=-90.0, le=90.0)]
Crs = Literal["gcj02", "wgs84"]

MAX_LIST = 2_000  # ids / routes / stops per filter
MAX_POLYGON_VERTICES = 5_000  # in all rings of a polygon filter together (checked when it is compiled)

# GeoJSON geometry, typed all the way down: a frame nested deeper than a MultiPolygon's positions is
# refused where the nesting starts, and a coordinate must be a number (not a bool, string or list).
Position = tuple[float, float]
Ring = Annotated[list[Position], Meta(min_length=4, max_length=MAX_POLYGON_VERTICES)]
Rings = Annotated[list[Ring], Meta(min_length=1, max_length=MAX_POLYGON_VERTICES // 4)]


class PolygonGeometry(Struct, tag="Polygon", tag_field="type", forbid_unknown_fields=True):
    coordinates: Rings  # exterior ring, then holes
    bbox: list[float] | None = None  # allowed by GeoJSON, ignored


class MultiPolygonGeometry(Struct, tag="MultiPolygon", tag_field="type", forbid_unknown_fields=True):
    coordinates: Annotated[list[Rings], Meta(min_length=1, max_length=MAX_POLYGON_VERTICES // 4)]
    bbox: list[float] | None = None


class Near(Struct, forbid_unknown_fields=True):
    lng: Lng
    lat: Lat
    radius_m: Annotated[float, Meta(gt=0.0, le=50_000.0)]


class Filter(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """At most one spatial part (bbox, polygon, district, near); routes, stops and ids narrow it further."""

    bbox: tuple[Lng, Lat, Lng, Lat] | None = None
    polygon: PolygonGeometry | MultiPolygonGeometry | None = None  # a GeoJSON geometry
    district: str | Annotated[list[str], Meta(min_length=1, max_length=16)] | None = None
    near: Near | None = None
    routes: Annotated[list[str], Meta(min_length=1, max_length=MAX_LIST)] | None = None
    ids: Annotated[list[str], Meta(min_length=1, max_length=MAX_LIST)] | None = None
    stops: Annotated[list[str], Meta(min_length=1, max_length=MAX_LIST)] | None = None  # records' stop_id


class Significance(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Send an entity again only when it changed this much since the last copy this stream sent."""

    metres: Annotated[float, Meta(ge=0.0, le=100_000.0)] | None = None
    slots: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    status_only: bool = False


class Options(Struct, forbid_unknown_fields=True, omit_defaults=True):
    snapshot: bool = True
    min_interval_ms: Annotated[int, Meta(ge=0, le=60_000)] = 0
    significance: Significance | None = None
    crs: Crs = "gcj02"


class Resume(Struct, forbid_unknown_fields=True, omit_defaults=True):
    epoch: Annotated[str, Meta(min_length=1, max_length=64)]
    seq: Annotated[int, Meta(ge=0)]
    # The last ``pos`` received: lets any node (another process, or after a restart) rebuild what was missed.
    pos: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None


class Subscribe(Struct, tag="subscribe", tag_field="type", forbid_unknown_fields=True):
    id: SubId
    feed: str
    filter: Filter = msgspec.field(default_factory=Filter)
    options: Options = msgspec.field(default_factory=Options)
    resume: Resume | None = None


class Unsubscribe(Struct, tag="unsubscribe", tag_field="type", forbid_unknown_fields=True):
    id: SubId


class Update(Struct, tag="update", tag_field="type", forbid_unknown_fields=True):
    id: SubId
    filter: Filter


class Ping(Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    t: int | float | str | None = None


class ReplayOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    snapshot: bool = True  # send the as-of snapshot at ``from`` first
    crs: Crs = "gcj02"


ReplayTime = Annotated[int, Meta(ge=0)] | Annotated[str, Meta(min_length=4, max_length=40)]
ReplaySpeedValue = Annotated[float, Meta(ge=1.0, le=1000.0)] | Literal["max"]


class ReplayStart(Struct, tag="replay", tag_field="type", forbid_unknown_fields=True):
    """Replay the tier's history of ``feed`` over ``[from, to)`` (ISO 8601, Shanghai time by default, or
    epoch ms) at ``speed`` (1..1000 or "max"), with a live subscription's filter. See docs/protocol.md."""

    id: SubId
    feed: str
    from_: ReplayTime = msgspec.field(name="from")
    to: ReplayTime
    speed: ReplaySpeedValue = 1.0
    filter: Filter = msgspec.field(default_factory=Filter)
    options: ReplayOptions = msgspec.field(default_factory=ReplayOptions)


class ReplayPause(Struct, tag="pause", tag_field="type", forbid_unknown_fields=True):
    id: SubId


class ReplayResume(Struct, tag="resume", tag_field="type", forbid_unknown_fields=True):
    id: SubId


class ReplaySeek(Struct, tag="seek", tag_field="type", forbid_unknown_fields=True):
    id: SubId
    at: ReplayTime


class ReplaySpeed(Struct, tag="speed", tag_field="type", forbid_unknown_fields=True):
    id: SubId
    speed: ReplaySpeedValue


class ReplayStop(Struct, tag="stop", tag_field="type", forbid_unknown_fields=True):
    id: SubId


ReplayMessage = ReplayStart | ReplayPause | ReplayResume | ReplaySeek | ReplaySpeed | ReplayStop
REPLAY_MESSAGES = (ReplayStart, ReplayPause, ReplayResume, ReplaySeek, ReplaySpeed, ReplayStop)

ClientMessage = Subscribe | Unsubscribe | Update | Ping | ReplayMessage

_json_decoder = msgspec.json.Decoder(ClientMessage)
_msgpack_decoder = msgspec.msgpack.Decoder(ClientMessage)
_loose_json = msgspec.json.Decoder()
_loose_msgpack = msgspec.msgpack.Decoder()


def _sub_id_of(data: bytes | str, binary: bool) -> str | None:
    """Best effort: the id of a message that failed validation, so the error can name it."""
    try:
        obj = (
            _loose_json.decode(data)
            if isinstance(data, str)
            else _loose_msgpack.decode(data)
            if binary
            else _loose_json.decode(data)
        )
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    if isinstance(obj, dict):
        sub_id = obj.get("id")
        if isinstance(sub_id, str) and 0 < len(sub_id) <= 64:
            return sub_id
    return None


def decode_client_message(data: bytes | str, *, binary: bool) -> ClientMessage:
    """Decode one frame (JSON text or MessagePack binary) into a typed message."""
    try:
        if binary:
            if isinstance(data, str):
                raise ProtocolError(BAD_ENCODING, "expected a binary MessagePack frame, got text")
            message: ClientMessage = _msgpack_decoder.decode(data)
        else:
            message = _json_decoder.decode(data)
    except msgspec.ValidationError as err:
        # A filter that is not a filter says so (the path names the field: "- at `$.filter.polygon...`").
        code = INVALID_FILTER if "`$.filter" in str(err) else INVALID_MESSAGE
        raise ProtocolError(code, str(err), _sub_id_of(data, binary)) from None
    except msgspec.DecodeError as err:
        kind = "MessagePack" if binary else "JSON"
        raise ProtocolError(BAD_ENCODING, f"not valid {kind}: {err}") from None
    except RecursionError:
        raise ProtocolError(BAD_ENCODING, "the frame is nested too deeply") from None
    except UnicodeDecodeError:
        raise ProtocolError(BAD_ENCODING, "a MessagePack string is not valid UTF-8") from None
    return message
