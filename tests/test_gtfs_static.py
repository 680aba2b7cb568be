"""Static GTFS of the simulated network: valid under an independent validator (gtfs-guru, a Rust
implementation of the canonical GTFS rules), and every vehicle we publish names a trip, route and stops that
exist in it, as OpenTripPlanner or OneBusAway would match them."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import gtfs_guru
import msgspec
import pytest

from adapters.formats import parse_with
from adapters.simulators.beijing import utc_from_local
from adapters.simulators.city import DEFAULT_BUSES, SimulatedCity
from adapters.simulators.gtfs_export import build_zip
from schemas import TIERS
from streams.policy import PolicyEngine
from ws_server.config import Naming, ServerConfig
from ws_server.testing import running_node

SEED = 2019  # `shfeeds run`'s
START = date(2026, 11, 23)
# A workday morning peak (peak-only buses out), a workday afternoon, a Saturday, and a night (night lines).
MOMENTS = [
    utc_from_local(2026, 11, 27, 8, 10),
    utc_from_local(2026, 11, 27, 13, 0),
    utc_from_local(2026, 11, 28, 18, 30),
    utc_from_local(2026, 11, 28, 2, 15),
]
ENGINE = PolicyEngine(secret=b"gtfs-static-test-secret")


def _tables(body: bytes) -> dict[str, list[dict[str, str]]]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {
            name: list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8")))) for name in archive.namelist()
        }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full city's feed, written by the real CLI."""
    out = tmp_path_factory.mktemp("gtfs") / "static.zip"
    argv = [sys.executable, "-m", "shfeeds_cli.main", "gtfs", "export", "--out", str(out)]
    argv += ["--seed", str(SEED), "--start-date", START.isoformat()]
    subprocess.run(argv, check=True, timeout=300, capture_output=True)
    return out


def test_export_passes_the_gtfs_validator(exported: Path) -> None:
    result = gtfs_guru.validate(str(exported), country_code="CN", date="2026-11-27")
    errors = [(n.code, n.file, n.row, n.field, n.message) for n in result.errors()]
    assert result.is_valid and not errors, errors[:20]
    # The only warning: route and stop names "should use mixed case". They are Chinese, a script without
    # letter case, which the rule's upper/lower-case heuristic cannot tell from all-caps text.
    for notice in result.warnings():
        assert notice.code == "mixed_case_recommended_field", (notice.code, notice.message, notice.context())
        assert any("\u4e00" <= ch <= "\u9fff" for ch in str(notice.get("fieldValue"))), notice.context()
    tables = _tables(exported.read_bytes())
    assert {"agency.txt", "routes.txt", "stops.txt", "trips.txt", "stop_times.txt", "shapes.txt", "calendar.txt",
            "frequencies.txt", "feed_info.txt"} <= set(tables)  # fmt: skip
    assert len(tables["routes.txt"]) > 1500 and {"M1", "M4", "M16"} <= {r["route_id"] for r in tables["routes.txt"]}
    assert tables["calendar.txt"][0]["start_date"] == "20261123"


def test_export_is_deterministic() -> None:
    assert build_zip(7, 400, START) == build_zip(7, 400, START)
    assert build_zip(7, 400, START) != build_zip(8, 400, START)


def _published_vehicles(city: SimulatedCity, t_s: int) -> dict[str, list[dict[str, Any]]]:
    """The bus and metro records at ``t_s`` as the adapters parse them, then every tier's view of them."""
    out: dict[str, list[dict[str, Any]]] = {tier: [] for tier in TIERS}
    for feed, fmt, options in (
        ("bus", "sh-bus-gps", {}),
        ("metro", "gtfs-rt-vp", {"mode": "metro", "shanghai": True}),
    ):
        body = city.render(feed, t_s)
        parsed = parse_with(fmt, body, source=f"sh-{feed}", received_at_ms=t_s * 1000, **options)
        assert parsed.rejects == []
        records = [msgspec.to_builtins(r) for r in parsed.records]
        for tier, views in ENGINE.apply_all(feed, records).items():
            out[tier].extend(views)
    return out


def test_every_published_vehicle_matches_a_trip_of_the_static_feed(exported: Path) -> None:
    tables = _tables(exported.read_bytes())
    trips = {t["trip_id"]: t for t in tables["trips.txt"]}
    routes = {r["route_id"] for r in tables["routes.txt"]}
    stops = {s["stop_id"] for s in tables["stops.txt"]}
    stops_of_trip: dict[str, set[str]] = {}
    for row in tables["stop_times.txt"]:
        stops_of_trip.setdefault(row["trip_id"], set()).add(row["stop_id"])
    city = SimulatedCity(seed=SEED, start_ms=MOMENTS[0] * 1000, buses=DEFAULT_BUSES, lots=10, connectors=10)
    for t_s in MOMENTS:
        views = _published_vehicles(city, t_s)
        assert len(views["operator"]) > 100
        for tier, vehicles in views.items():
            assert len(vehicles) == len(views["operator"]), tier
            for v in vehicles:
                where = (tier, v.get("mode", "bus"), v.get("route_id"), v.get("trip_id"))
                assert v.get("trip_id") in trips, where  # every vehicle on a trip says which, at every tier
                trip = trips[v["trip_id"]]
                assert v.get("route_id") in routes and trip["route_id"] == v["route_id"], where
                if v.get("direction_id") is not None:
                    assert trip["direction_id"] == str(v["direction_id"]), where
                for key in ("stop_id", "next_stop_id"):
                    if v.get(key) is not None:
                        assert v[key] in stops, (key, *where)
                        if v.get("mode", "bus") == "bus":  # a bus's next stop is one of its trip's stops
                            assert v[key] in stops_of_trip[v["trip_id"]], (key, *where)


@pytest.mark.stack
async def test_server_serves_the_feed_with_etag_and_304(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("wsgtfsstatic")
    config = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=Naming(prefix + ".", prefix),
        network_seed=11,
        network_buses=300,
    )
    async with running_node(config) as node, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{node.port}/gtfs/static.zip"
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=120)) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
            body = await resp.read()
            etag = resp.headers["ETag"]
        tables = _tables(body)
        assert tables["feed_info.txt"][0]["feed_version"] == "seed-11-buses-300"
        async with http.get(url, headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304 and await resp.read() == b""
        async with http.get(url, headers={"If-None-Match": '"something-else"'}) as resp:
            assert resp.status == 200 and await resp.read() == body
