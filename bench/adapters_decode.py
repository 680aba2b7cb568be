"""GTFS-Realtime VehiclePositions: decode + normalise throughput against plain protobuf decoding.

    .venv/bin/python -m bench.adapters_decode [--vehicles 17000] [--repeat 5]

Input: a city-sized feed built here with the official bindings (seeded: Shanghai-area positions,
bearings, speeds, occupancy, trip and route ids), plus the real Caltrain file. Measured in one run:
  baseline  FeedMessage.ParseFromString only (the floor any GTFS-RT consumer pays);
  ours      adapters.formats.gtfs_rt_vp.parse: decode, convert, validate into canonical records.
The best of ``--repeat`` runs is reported, as vehicles per second and as the ratio ours / baseline.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

from google.transit import gtfs_realtime_pb2

import settings
from adapters.formats.gtfs_rt_vp import parse


def city_feed(vehicles: int, seed: int = 20261127) -> bytes:
    rng = random.Random(seed)
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = 1_795_756_000
    occupancy = list(gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.values())
    for i in range(vehicles):
        entity = feed.entity.add(id=f"v{i}")
        vp = entity.vehicle
        vp.trip.trip_id = f"T{i % 3000}-{i // 3000}"
        vp.trip.route_id = f"R{i % 1500}"
        vp.trip.direction_id = i % 2
        vp.vehicle.id = f"OBU-{i:06d}"
        vp.vehicle.label = f"{i % 99:02d}-{i:04d}"
        vp.position.longitude = rng.uniform(121.1, 121.9)
        vp.position.latitude = rng.uniform(30.9, 31.5)
        vp.position.bearing = rng.uniform(0, 359.9)
        vp.position.speed = rng.uniform(0, 15)
        vp.timestamp = 1_795_756_000 - rng.randrange(30)
        vp.occupancy_status = rng.choice(occupancy)  # type: ignore[assignment]
        vp.stop_id = f"S{rng.randrange(20000)}"
    return feed.SerializeToString()


def best_rate(fn: Callable[[], int], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        count = fn()
        elapsed = time.perf_counter() - started
        best = max(best, count / elapsed)
    return best


def measure(label: str, data: bytes, repeat: int, shanghai: bool) -> None:
    def baseline() -> int:
        message = gtfs_realtime_pb2.FeedMessage()
        message.ParseFromString(data)
        return len(message.entity)

    def ours() -> int:
        result = parse(data, source="bench", received_at_ms=0, mode="bus", shanghai=shanghai)
        assert not result.rejects, result.rejects[:1]
        return len(result.records)

    base, mine = best_rate(baseline, repeat), best_rate(ours, repeat)
    print(f"{label}: {len(data):,} bytes, {baseline():,} vehicles")
    print(f"  baseline ParseFromString only : {base:12,.0f} vehicles/s")
    print(f"  decode + normalise (ours)     : {mine:12,.0f} vehicles/s   ratio {mine / base:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=17_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    measure(f"city feed ({args.vehicles:,} vehicles)", city_feed(args.vehicles), args.repeat, shanghai=True)
    caltrain = Path(settings.PROJECT_ROOT).parent / "shared/data/gtfs_rt/caltrain/ct-vehicle-positions.pb"
    if caltrain.exists():
        data = caltrain.read_bytes()
        measure("real Caltrain file (best of repeat x 200 runs)", data, args.repeat * 200, shanghai=False)


if __name__ == "__main__":
    main()
