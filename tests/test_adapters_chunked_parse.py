"""A long Shanghai response is parsed chunk by chunk, each chunk's points converted in one array pass; the
chunks joined are the whole response's result, and the poller hands each chunk on before building the next."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.formats import get_format
from adapters.formats.common import ItemError, never_raises_chunks, to_wgs84
from adapters.formats.points import ItemPoints, PointMemo
from adapters.formats.result import ParseResult
from adapters.formats.sh_envelope import CHUNK_ITEMS
from adapters.runtime.kafka_sink import KafkaSink
from adapters.runtime.polling_adapter import PollingAdapter
from kafka_admin import ensure_topics
from schemas import raw_topic

from .adapters_helpers import RECEIVED_AT
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)
from .test_adapters_shanghai import documented_example


def _points(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    systems = ["gcj02", "GCJ-02", "bd09", "bd09ll", "wgs84", None]
    out = []
    for i in range(n):
        lng, lat = rng.uniform(120.85, 122.0), rng.uniform(30.68, 31.88)
        item: dict[str, Any] = {"lng": lng, "lat": lat}
        if i % 7 == 3:
            item = {"lng": str(lng), "lat": str(lat)}  # quoted numbers, as some sources send
        system = systems[i % len(systems)]
        if system is not None:
            item["coordType"] = system
        out.append(item)
    return out


def test_points_converted_for_a_whole_list_match_the_one_point_conversion():
    items = _points(600)
    bad: list[Any] = [{"lng": "east", "lat": 31.2}, {"lng": 200.0, "lat": 31.2, "coordType": "gcj02"},
           {"lng": 121.4, "lat": 31.2, "coordType": "utm"}, {"lat": 31.2}, "not an object"]  # fmt: skip
    points = ItemPoints([*items, *bad])
    assert len(points.converted) == sum(1 for i in items if i.get("coordType") not in (None, "wgs84"))
    for item in items:
        want = to_wgs84(float(item["lng"]), float(item["lat"]), item.get("coordType"))
        assert points.of(item) == pytest.approx(want, abs=1e-9)  # ~0.1 mm
    for refused in bad[:-1]:
        with pytest.raises(ItemError) as from_list:
            points.of(refused)
        with pytest.raises(ItemError) as alone:
            ItemPoints([refused]).of(refused)
        assert str(from_list.value) == str(alone.value)


def test_a_bus_standing_still_is_the_same_record_whatever_moves_around_it():
    """The array pass's last bits depend on the batch (alone or among a thousand, ~1 point in 7 differs in
    the fifteenth decimal); the memo keeps a point's first conversion."""
    example = documented_example("sh-bus-gps")
    base = example["data"][0]
    rng = random.Random(3)
    standing = [{**base, "obuId": f"still-{i}", "lng": rng.uniform(121.2, 121.7), "lat": rng.uniform(31.0, 31.4)}
                for i in range(60)]  # fmt: skip
    others = [{**base, "obuId": f"moving-{i}", "lng": rng.uniform(121.0, 121.9), "lat": rng.uniform(30.9, 31.6)}
              for i in range(900)]  # fmt: skip

    def parsed(items: list[dict[str, Any]]) -> dict[str, Any]:
        body = json.dumps({**example, "data": items}).encode()
        return {r.id: r for r in get_format("sh-bus-gps").parse(body, source="t", received_at_ms=RECEIVED_AT).records}

    alone = {bus["obuId"]: parsed([bus])[bus["obuId"]] for bus in standing}  # a first poll with each bus alone
    among = parsed([*others[:450], *standing, *others[450:]])  # later, among a moving fleet
    assert all(among[bus_id] == record for bus_id, record in alone.items())


def test_the_point_memo_keeps_what_is_asked_for_again():
    memo = PointMemo(generation=3)
    memo.put(("gcj02", 121.0, 31.0), (120.99, 31.0))
    for i in range(10):
        memo.put(("gcj02", 121.1 + i, 31.0), (0.0, 0.0))
        assert memo.get(("gcj02", 121.0, 31.0)) == (120.99, 31.0)  # asked every "poll": never dropped
    assert memo.get(("gcj02", 121.1, 31.0)) is None  # not asked again: dropped with its generation
    assert len(memo.newer) <= 3 and len(memo.older) <= 3


def _bus_response(n: int, bad_at: int | None = None) -> dict[str, Any]:
    example = documented_example("sh-bus-gps")
    base = example["data"][0]
    items: list[Any] = [{**base, "obuId": f"bus-{i}", "lng": base["lng"] + i * 1e-4} for i in range(n)]
    if bad_at is not None:
        items[bad_at] = {**base, "obuId": "bus-bad", "lng": "east"}
    return {**example, "data": items}


def test_a_response_in_chunks_is_the_whole_response():
    n, bad_at = 2 * CHUNK_ITEMS + 500, CHUNK_ITEMS + 700
    body = json.dumps(_bus_response(n, bad_at)).encode()
    spec = get_format("sh-bus-gps")
    chunks = list(spec.parse_chunks(body, source="sh-test", received_at_ms=RECEIVED_AT))
    whole = spec.parse(body, source="sh-test", received_at_ms=RECEIVED_AT)
    assert [len(c.records) + len(c.rejects) for c in chunks] == [CHUNK_ITEMS, CHUNK_ITEMS, 500]
    assert [r for c in chunks for r in c.records] == whole.records and len(whole.records) == n - 1
    (reject,) = whole.rejects
    assert reject.locator == f"data[{bad_at}]" and "lng" in reject.reason  # counted through the whole list


def test_a_format_without_chunks_yields_its_whole_result_once():
    spec = get_format("parking-geojson")
    body = b'{"type": "FeatureCollection", "features": []}'
    (only,) = spec.parse_chunks(body, source="t", received_at_ms=RECEIVED_AT)
    assert only == spec.parse(body, source="t", received_at_ms=RECEIVED_AT)


def test_an_error_past_the_item_loop_rejects_the_whole_response_with_its_bytes():
    @never_raises_chunks("bus")
    def chunks(data: bytes, *, source: str, received_at_ms: int) -> Iterator[ParseResult]:
        yield ParseResult()
        raise RuntimeError("a bug")

    first, second = chunks(b"the body", source="t", received_at_ms=RECEIVED_AT)
    (letter,) = second.rejects
    assert first.rejects == [] and letter.original == b"the body"
    assert (letter.feed, letter.reason) == ("bus", "parser error RuntimeError: a bug")


@pytest.mark.stack
async def test_the_poller_hands_each_chunk_to_kafka_before_building_the_next(
    kafka_bootstrap, running_stack, unique_name, topic_prefix
):
    name = unique_name("chunks")
    await ensure_topics(kafka_bootstrap, running_stack.topic_partitions, names=[topic_prefix + raw_topic("bus")])
    response = _bus_response(3 * CHUNK_ITEMS)
    response["data"][-1] = dict(response["data"][1])  # the same bus again, in the last chunk
    # A first response of one bus starts the producer and learns the topic, as any running adapter has.
    bodies = [json.dumps({**response, "data": response["data"][:1]}).encode(), json.dumps(response).encode()]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies.pop(0), content_type="application/json")

    app = web.Application()
    app.router.add_get("/bus/gps.json", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/bus/gps.json"
    sink = KafkaSink(kafka_bootstrap, topic_prefix=topic_prefix)
    await sink.start()
    handed_on: list[int] = []  # messages past the sink's buffer when each chunk was asked for
    try:
        async with aiohttp.ClientSession() as session:
            adapter = PollingAdapter(
                name=name, format_name="sh-bus-gps", url=url, interval_s=1, timeout_s=5, session=session, sink=sink
            )
            chunks = adapter.parse_chunks

            def watched(data: bytes, **kwargs: Any) -> Any:
                for chunk in chunks(data, **kwargs):
                    handed_on.append(sink.stats.in_flight + sink.stats.delivered)
                    yield chunk

            await adapter.poll_once()
            await sink.flush(timeout_s=60)
            adapter.parse_chunks = watched
            await adapter.poll_once()
        await sink.flush(timeout_s=60)
    finally:
        await sink.close()
        await runner.cleanup()
    # Counted from the one bus of the first poll, which the second repeats (the change filter skips it). The
    # producer takes one batch per partition at a time, so later chunks may wait for its sender: the first
    # chunk, though, is on its way before the second is built.
    assert handed_on[:2] == [1, CHUNK_ITEMS] and handed_on[2] >= CHUNK_ITEMS
    stats = adapter.stats
    # Skipped: the bus of the first poll, and the one repeated inside the response (also a duplicate).
    assert (stats.records, stats.skipped, stats.duplicates, stats.rejects) == (1 + 3 * CHUNK_ITEMS - 2, 2, 1, 0)
    assert sink.stats.delivered == 1 + 3 * CHUNK_ITEMS - 2
