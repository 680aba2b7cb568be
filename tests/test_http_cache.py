"""The HTTP side's pure parts, with no broker: conditional GET and gzip (``ws_server.http_cache``), GTFS-RT
renderings that keep their tag while the entities are unchanged, and feed query parsing."""

from __future__ import annotations

import gzip

import msgpack
import pytest
from google.transit import gtfs_realtime_pb2
from websockets.datastructures import Headers
from websockets.http11 import Request

from ws_server.gtfs_rt import VehicleEntities
from ws_server.gtfs_rt_feed import FeedRenderings
from ws_server.http_cache import accepts_gzip, conditional_response, http_date, not_modified
from ws_server.http_query import QueryError, encode_cursor, parse_query
from ws_server.protocol.state import Entry

T0 = 1_796_000_000_000


def request(**headers: str) -> Request:
    return Request("/x", Headers([(k.replace("_", "-"), v) for k, v in headers.items()]))


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("br;q=1.0, *;q=0.1", True),
        ("gzip;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding(accept: str, gzipped: bool) -> None:
    assert accepts_gzip(request(Accept_Encoding=accept)) is gzipped


def test_conditional_requests() -> None:
    etag = '"abc"'
    assert not_modified(request(If_None_Match='"x", "abc"'), etag, None)
    assert not_modified(request(If_None_Match='W/"abc"'), etag, None)  # weak comparison
    assert not_modified(request(If_None_Match='"abc-gz"'), etag, None)  # the gzipped representation's tag
    assert not_modified(request(If_None_Match="*"), etag, None)
    assert not not_modified(request(If_None_Match='"abd"'), etag, None)
    assert not_modified(request(If_Modified_Since=http_date(T0)), etag, T0 + 999)
    assert not not_modified(request(If_Modified_Since=http_date(T0)), etag, T0 + 1000)
    assert not not_modified(request(If_Modified_Since="yesterday"), etag, T0)
    # If-None-Match wins over If-Modified-Since (RFC 9110).
    assert not not_modified(request(If_None_Match='"old"', If_Modified_Since=http_date(T0)), etag, T0)


def test_conditional_response_gzips_and_answers_304() -> None:
    body = b"x" * 4000
    plain = conditional_response(request(), body, "text/plain", last_modified_ms=T0)
    assert plain.status_code == 200 and plain.body == body and "Content-Encoding" not in plain.headers
    assert plain.headers["Last-Modified"] == http_date(T0)
    packed = conditional_response(request(Accept_Encoding="gzip"), body, "text/plain")
    assert packed.headers["Content-Encoding"] == "gzip" and gzip.decompress(packed.body) == body
    assert packed.headers["ETag"] == plain.headers["ETag"][:-1] + '-gz"'
    again = conditional_response(request(If_None_Match=packed.headers["ETag"]), body, "text/plain")
    assert again.status_code == 304 and again.body == b"" and again.headers["ETag"] == plain.headers["ETag"]
    small = conditional_response(request(Accept_Encoding="gzip"), b"{}", "application/json")
    assert "Content-Encoding" not in small.headers  # not worth compressing


def _bus(entity_id: str, lng: float, **extra: object) -> Entry:
    record = {"id": entity_id, "lng": lng, "lat": 31.23, "crs": "gcj02", "expires_at": T0 + 60_000, **extra}
    return Entry(entity_id, msgpack.packb(record), record)


def test_gtfs_rt_rendering_keeps_its_tag_and_time_while_the_entities_are_unchanged() -> None:
    renderings = FeedRenderings(VehicleEntities, max_age_ms=1000)
    entries = [_bus("b2", 121.48), _bus("b1", 121.47), _bus("gone", 121.46, expires_at=T0 - 1)]
    first = renderings.render("public", entries, T0)
    feed = gtfs_realtime_pb2.FeedMessage.FromString(first.body)
    assert [e.id for e in feed.entity] == ["b1", "b2"]  # id order; the expired one left out
    assert feed.header.timestamp == T0 // 1000 and feed.header.incrementality == feed.header.FULL_DATASET
    assert renderings.fresh("public", T0 + 1000) is first and renderings.fresh("public", T0 + 1001) is None
    same = renderings.render("public", list(reversed(entries)), T0 + 5000)
    assert same.body == first.body and same.etag == first.etag and same.modified_ms == T0
    moved = renderings.render("public", [_bus("b1", 121.49), entries[0]], T0 + 6000)
    assert moved.etag != first.etag and moved.modified_ms == T0 + 6000
    assert gtfs_realtime_pb2.FeedMessage.FromString(moved.body).header.timestamp == (T0 + 6000) // 1000


def test_feed_query_parsing() -> None:
    query = parse_query("near=121.47,31.23,500&routes=71,72&limit=10&cursor=" + encode_cursor("bus-7"))
    assert query.filter.near is not None and query.filter.near.radius_m == 500
    assert query.filter.routes == ["71", "72"] and query.limit == 10 and query.after == "bus-7"
    assert parse_query("district=Huangpu,Xuhui").filter.district == ["Huangpu", "Xuhui"]
    for bad, code in [
        ("bbox=1,2,3", "invalid_filter"),
        ("near=121,31,inf", "invalid_filter"),
        ("bbox=200,31,201,32", "invalid_filter"),
        ("ids=a,,b", "invalid_filter"),
        ("limit=2001", "invalid_parameter"),
        ("page=2", "invalid_parameter"),
        ("cursor=***", "invalid_cursor"),
    ]:
        with pytest.raises(QueryError) as err:
            parse_query(bad)
        assert err.value.code == code, bad
