"""End to end, on a real Kafka + Redis of the test's own: simulated Shanghai buses → adapter → raw.bus →
streams → tier.public.bus → WebSocket server → `shfeeds tail bus`, as a newcomer would run it."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

import settings as settings_mod
from access.identity import kafka_options
from geo.crs import gcj02_to_wgs84, plausibly_in_shanghai
from geo.grid import snap
from schemas import decode_kafka
from tests.conftest import _free_port, as_components, settings_env

CLI = [sys.executable, "-m", "shfeeds_cli.main"]
NEVER_PUBLIC = ("plate", "driver_id", "vehicle_id", "speed_kmh", "diagnostics", "passenger_count")


@pytest.fixture
def service(isolated_stack: settings_mod.Settings) -> Iterator[tuple[settings_mod.Settings, float, int]]:
    # Every component as its own principal (access/principals.py): a grant one of them lacks stops the flow.
    env = as_components(settings_env(isolated_stack))
    env["SHFEEDS_ARCHIVE_FLUSH_INTERVAL_S"] = "5"
    control_plane_port = _free_port()
    env["SHFEEDS_CONTROL_PLANE_PORT"] = str(control_plane_port)
    # 1,320 buses make 120 lines, three of them night lines: at least ~25 buses run at any hour of the day.
    commands = [
        ["simulate", "--buses", "1320", "--seed", "11"],
        ["adapter", "run", "sh-bus"],
        ["streams", "worker"],
        ["serve", "--network-seed", "11", "--network-buses", "1320"],
        ["archive", "run", "--feeds", "bus"],
        ["control-plane", "--data-dir", str(isolated_stack.stack_dir / "control-plane")],
    ]
    started = time.monotonic()
    procs = [
        subprocess.Popen([*CLI, *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for cmd in commands
    ]
    try:
        yield isolated_stack, started, control_plane_port
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_tail_bus_prints_live_blurred_public_positions(service: tuple[settings_mod.Settings, float, int]) -> None:
    own, started, control_plane_port = service
    tail = subprocess.run(
        [*CLI, "tail", "bus", "--count", "30", "--timeout", "120"],
        env=settings_env(own),
        capture_output=True,
        text=True,
        timeout=180,
    )
    first_output_after = time.monotonic() - started
    lines = [line for line in tail.stdout.splitlines() if line.strip()]
    assert len(lines) >= 30, f"tail printed {len(lines)} lines; stderr: {tail.stderr[-2000:]}"
    print(f"30 public bus positions printed {first_output_after:.1f} s after the service started")
    now_ms = time.time() * 1000
    for line in lines:
        rec = orjson.loads(line)
        assert rec["crs"] == "gcj02" and rec["policy_version"]
        assert not set(NEVER_PUBLIC) & set(rec), f"public record leaks {set(NEVER_PUBLIC) & set(rec)}"
        # Public positions are held back 30 s after the event (streams/policy/tier_policy.toml).
        assert now_ms - rec["observed_at"] >= 30_000 - 1_000
        lng, lat = gcj02_to_wgs84(rec["lng"], rec["lat"])
        assert plausibly_in_shanghai(lng, lat)
        # Blurred: the WGS-84 point is the centre of a 50 m grid cell; snapping it again moves it less than the
        # 6-decimal output rounding (~0.1 m), where an unsnapped point would move ~12 m on average.
        slng, slat = snap(lng, lat, 50.0)
        assert math.dist((lng, lat), (slng, slat)) < 2e-6
        # Bearing coarsened to 45° steps for the public.
        if "bearing" in rec:
            assert rec["bearing"] % 45 == 0
    # As OpenTripPlanner would match them: each bus names a trip of the server's static GTFS, on its route.
    with urllib.request.urlopen(f"http://127.0.0.1:{own.ws_port}/gtfs/static.zip", timeout=120) as resp:
        archive = zipfile.ZipFile(io.BytesIO(resp.read()))
    trips = {t["trip_id"]: t for t in csv.DictReader(io.StringIO(archive.read("trips.txt").decode()))}
    stops = {s["stop_id"] for s in csv.DictReader(io.StringIO(archive.read("stops.txt").decode()))}
    for line in lines:
        rec = orjson.loads(line)
        assert rec["trip_id"] in trips and trips[rec["trip_id"]]["route_id"] == rec["route_id"], rec
        assert rec["next_stop_id"] in stops, rec
    # The archiver and the control plane, as their own principals too, got the bus feed.
    archived = own.stack_dir / "archive"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (
        list(archived.glob("feed=bus/**/*.parquet")) and bus_heard_of(control_plane_port)
    ):
        time.sleep(2)
    assert list(archived.glob("feed=bus/**/*.parquet")), "the archiver wrote no bus file"
    assert bus_heard_of(control_plane_port), "the control plane has no record count from sh-bus"


def bus_heard_of(control_plane_port: int) -> bool:
    """The control plane's health report has a record time from the bus source (read from ops.stats)."""
    url = f"http://127.0.0.1:{control_plane_port}/health/feeds"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            report = orjson.loads(resp.read())
    except OSError:
        return False
    bus: dict[str, Any] = next((f for f in report["feeds"] if f["feed"] == "bus"), {})
    return bool(bus.get("sources", {}).get("sh-bus", {}).get("last_record_ms"))


def test_raw_bus_is_keyed_by_vehicle_with_event_time_as_record_time(
    service: tuple[settings_mod.Settings, float, int],
) -> None:
    own, _, _ = service

    async def read_some() -> list[tuple[bytes, int, bytes]]:
        consumer = AIOKafkaConsumer(
            "raw.bus",
            bootstrap_servers=own.kafka_bootstrap,
            **kafka_options(),
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        got: list[tuple[bytes, int, bytes]] = []
        try:
            deadline = time.monotonic() + 90
            while len(got) < 50 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                for messages in batch.values():
                    got += [(m.key, m.timestamp, m.value) for m in messages if m.key and m.value]
        finally:
            await consumer.stop()
        return got

    messages = asyncio.run(read_some())
    assert len(messages) >= 50
    for key, timestamp, value in messages:
        record = decode_kafka("bus", value)
        assert key.decode() == record.id
        assert timestamp == record.observed_at
        assert record.id.startswith("OBU-")  # raw keeps the stable vehicle id; tiers decide what is shown
