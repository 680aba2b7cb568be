"""Every input gets a documented answer: the sans-I/O core is fed arbitrary JSON-like and MessagePack-like
values (deep nesting, NaN, infinities, huge numbers, wrong types, junk bytes) and must answer each with a
reply (an ``error`` with a documented code, or the verb's normal answer), never an exception."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_ws_protocol import T0, make
from ws_server.config import ServerConfig
from ws_server.protocol.codec import JSON, MSGPACK, decode_frame
from ws_server.protocol.errors import ERROR_CODES, INTERNAL_ERROR
from ws_server.protocol.limits import Limits
from ws_server.protocol.log_budget import LogBudget
from ws_server.protocol.messages import MAX_POLYGON_VERTICES
from ws_server.protocol.session import Session

NO_RATE_LIMIT = Limits(messages_per_s=1e9, burst=10**9, max_subscriptions=10**6)
ANSWERS = {"subscribed", "updated", "unsubscribed", "pong", "error", "snapshot", "delta", "reset", "quota"}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def answer(codec: str, data: bytes | str) -> list[dict[str, Any]]:
    """Feed one frame to a fresh session; the frames it answered with (it must not raise)."""
    _, session, sink = make(codec=codec, limits=NO_RATE_LIMIT)
    session.receive(data, T0)
    replies = sink.take()
    assert replies, "no answer"
    assert sink.closed is None
    for reply in replies:
        assert reply["type"] in ANSWERS
        if reply["type"] == "error":
            assert reply["code"] in ERROR_CODES and reply["code"] != INTERNAL_ERROR, reply
    return replies


def codes(replies: list[dict[str, Any]]) -> list[str]:
    return [r["code"] for r in replies if r["type"] == "error"]


# ---------------------------------------------------------------------------------------------- values

scalars = st.none() | st.booleans() | st.text(max_size=20) | st.integers(-(2**63), 2**64 - 1)
json_floats = st.floats(allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([math.nan, math.inf, -math.inf, 1e308])
json_like = st.recursive(
    scalars | json_floats,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
msgpack_like = st.recursive(
    scalars | any_floats | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
positions = st.lists(st.one_of(any_floats, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=3)))
rings = st.lists(st.lists(positions, max_size=8), max_size=3)
KEYS = ["type", "id", "feed", "filter", "options", "resume", "t", "bbox", "polygon", "district", "near", "routes"]


def templates(value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid-looking messages with one part replaced by an arbitrary value."""
    subscribe = {"type": "subscribe", "id": "a", "feed": "bus"}
    return st.one_of(
        st.builds(lambda v: {**subscribe, "filter": v}, value),
        st.builds(lambda v: {**subscribe, "options": v}, value),
        st.builds(lambda v: {**subscribe, "resume": v}, value),
        st.builds(lambda v: {**subscribe, "filter": {"polygon": {"type": "Polygon", "coordinates": v}}}, rings),
        st.builds(lambda v: {**subscribe, "filter": {"polygon": {"type": "MultiPolygon", "coordinates": [v]}}}, rings),
        st.builds(lambda v: {**subscribe, "filter": {"bbox": v}}, st.lists(any_floats, max_size=5)),
        st.builds(lambda v: {**subscribe, "filter": {"near": {"lng": v, "lat": 31.2, "radius_m": 10}}}, any_floats),
        st.builds(lambda k, v: {"type": "ping", k: v}, st.sampled_from(KEYS), value),
        st.builds(lambda v: {"type": "update", "id": "a", "filter": v}, value),
        st.builds(lambda v: {"type": v, "id": "a"}, value),
        st.dictionaries(st.sampled_from(KEYS), value, max_size=4),
    )


@FUZZ
@given(st.one_of(json_like, templates(json_like)))
def test_any_json_value_gets_a_documented_answer(value: Any) -> None:
    answer(JSON, orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())


@FUZZ
@given(st.one_of(msgpack_like, templates(msgpack_like)))
def test_any_msgpack_value_gets_a_documented_answer(value: Any) -> None:
    answer(MSGPACK, msgpack.packb(value))


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([JSON, MSGPACK]))
def test_junk_bytes_and_text_get_a_documented_answer(data: bytes, codec: str) -> None:
    answer(codec, data)
    answer(codec, data.decode("latin-1"))


# ---------------------------------------------------------------------------------------------- nesting


def _msgpack_deep(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # [[[...[nil]...]]]


def _packed_map(items: list[tuple[str, bytes]]) -> bytes:
    return bytes([0x80 | len(items)]) + b"".join(msgpack.packb(k) + v for k, v in items)


def test_json_nested_thousands_deep_is_refused_with_a_code() -> None:
    deep = "[" * 5000 + "]" * 5000
    for frame in (
        deep,
        f'{{"type":"ping","t":{deep}}}',
        f'{{"x":{deep},"type":"ping"}}',
        f'{{"id":"a","x":{deep},"type":"subscribe"}}',
        f'{{"type":"subscribe","id":"a","feed":"bus","filter":{{"polygon":{{"type":"Polygon","coordinates":{deep}}}}}}}',
        '{"a":' * 3000 + "1" + "}" * 3000,
    ):
        assert codes(answer(JSON, frame)) in (["bad_encoding"], ["invalid_message"], ["invalid_filter"])


def test_msgpack_nested_thousands_deep_is_refused_with_a_code() -> None:
    deep = _msgpack_deep(5000)
    polygon = _packed_map([("type", msgpack.packb("Polygon")), ("coordinates", deep)])
    subscribe = [("type", msgpack.packb("subscribe")), ("id", msgpack.packb("a")), ("feed", msgpack.packb("bus"))]
    for frame in (
        deep,
        _packed_map([("x", deep), ("type", msgpack.packb("ping"))]),
        _packed_map([*subscribe, ("filter", _packed_map([("polygon", polygon)]))]),
        _packed_map([*subscribe, ("zzz", deep)]),
    ):
        assert codes(answer(MSGPACK, frame)) in (["bad_encoding"], ["invalid_message"], ["invalid_filter"])


def test_nan_and_infinite_polygon_coordinates_over_msgpack_are_invalid_filters() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        for ring in (
            [[bad, 31.2], [121.5, 31.2], [121.45, 31.3], [bad, 31.2]],
            [[121.4, 31.2], [121.5, bad], [121.45, 31.3], [121.4, 31.2]],
        ):
            polygon = {"type": "Polygon", "coordinates": [ring]}
            message = {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"polygon": polygon}}
            replies = answer(MSGPACK, msgpack.packb(message))
            assert codes(replies) == ["invalid_filter"] and replies[0]["id"] == "a"


def test_coordinates_of_the_wrong_type_are_invalid_filters() -> None:
    positions: list[list[Any]] = [[True, 31.2], ["121.4", 31.2], [[121.4], 31.2], [121.4]]
    for position in positions:
        ring = [position, [121.5, 31.2], [121.45, 31.3], [121.4, 31.2]]
        polygon = {"type": "Polygon", "coordinates": [ring]}
        message = {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"polygon": polygon}}
        assert codes(answer(JSON, orjson.dumps(message).decode())) == ["invalid_filter"]


# ---------------------------------------------------------------------------------------------- limits


def _full_precision_polygon(vertices: int) -> dict[str, Any]:
    """A valid polygon (a circle about People's Square) whose coordinates use every digit of a double."""
    points = [
        [121.47370000000001 + 0.0123456789012345 * math.cos(a), 31.230400000000003 + 0.0123456789012345 * math.sin(a)]
        for a in (2 * math.pi * i / (vertices - 1) for i in range(vertices - 1))
    ]
    return {"type": "Polygon", "coordinates": [[*points, points[0]]]}


def test_the_largest_polygon_allowed_fits_in_a_json_frame() -> None:
    polygon = _full_precision_polygon(MAX_POLYGON_VERTICES)
    message = {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"polygon": polygon}}
    frame = orjson.dumps(message)
    assert len(frame) <= ServerConfig().max_frame_bytes
    assert [r["type"] for r in answer(JSON, frame.decode())] == ["subscribed", "snapshot"]
    one_more = _full_precision_polygon(MAX_POLYGON_VERTICES + 1)
    too_big = {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"polygon": one_more}}
    assert codes(answer(JSON, orjson.dumps(too_big).decode())) == ["invalid_filter"]


def test_the_log_budget_admits_n_lines_a_window_then_one_summary() -> None:
    budget = LogBudget(lines=3, window_ms=60_000)
    admitted = [budget.admit(T0 + i) for i in range(1000)]
    assert [a for a, _ in admitted].count(True) == 3
    assert all(held == 0 for _, held in admitted)
    assert budget.admit(T0 + 60_000) == (True, 997)  # the next window: one line reports what was held back
    assert budget.finish() == 0
    budget.admit(T0 + 60_001)
    budget.admit(T0 + 60_002)
    budget.admit(T0 + 60_003)
    assert budget.finish() == 1


def test_the_session_reports_every_refusal_to_its_error_hook() -> None:
    _, session, sink = make(limits=NO_RATE_LIMIT)
    seen: list[str] = []
    session.on_error = lambda err: seen.append(err.code)
    for _ in range(5):
        session.receive("{not json", T0)
    assert seen == ["bad_encoding"] * 5 and len(sink.take()) == 5
    assert isinstance(session, Session) and decode_frame(b'{"a":1}') == {"a": 1}
