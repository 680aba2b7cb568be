"""Benchmark: the control plane's cost next to the pipeline it watches, and how fast it sees a stall.

1. CPU: a stream worker (its own process, ops stats on) takes bus records at a steady rate for a while;
   the control plane (its own process) folds the worker's per-batch stats. CPU seconds of each process
   over the same span are read from /proc; the goal is the control plane under 5 % of the worker's.
2. Stall → /health: a source reports every 0.5 s as an adapter does, then stops having data; the time
   from its last successful poll to /health answering 503 is measured against the feed's threshold.

The CPU span is repeated ``--repeat`` times with the same two processes, so the machine's other load
(it is shared) falls on both alike; the share is the median of the spans' ratios.

Usage: .venv/bin/python bench/control_plane.py [--rate 10000] [--seconds 30] [--repeat 3] [--stale-after 5]
Prints one JSON object (with the git SHA and whether the goal is met) and writes it to ``--json``
(default ``bench/results/control_plane.json``); exit code 1 when the goal is missed. Results are kept in
docs/benchmarks-control-plane.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from control_plane.emitter import StatsEmitter  # noqa: E402
from control_plane.figures import source_record  # noqa: E402
from kafka_admin import delete_topics, ensure_topics  # noqa: E402
from schemas import (  # noqa: E402
    Naming,
    VehiclePosition,
    encode_kafka,
    raw_topic,
)
from streams.stages.worker import worker_topics  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
FLEET = 17_000
GOAL_SHARE = 0.05  # the control plane's CPU under 5 % of the pipeline's


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(entity: int, k: int, now: int) -> bytes:
    return encode_kafka(
        VehiclePosition(
            id=f"bus-{entity}", source="bench", observed_at=now, expires_at=now + 120_000,
            lng=121.25 + (entity % 130) * 0.004 + k * 0.00003, lat=31.05 + (entity // 130) * 0.003,
            route_id=str(entity % 900), label=f"B{entity}", speed_kmh=25.0, bearing=90.0, seq=k,
        )
    )  # fmt: skip


async def produce_steadily(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        start = time.monotonic()
        k = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            now = time.time_ns() // 1_000_000
            while sent < due:
                entity = sent % FLEET
                await producer.send(topic, record(entity, k, now), key=f"bus-{entity}".encode(), timestamp_ms=now)
                sent += 1
                if entity == FLEET - 1:
                    k += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url):
                    return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} never answered")


async def drained(base: str, timeout_s: float = 180) -> None:
    """Until the clean stage reports no lag on any partition and no new input for two seconds."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base}/health/feeds") as r:
                fig = (await r.json())["feeds"][0]["figures"]
            quiet = fig["last_seen_ms"] and time.time_ns() // 1_000_000 - fig["last_seen_ms"] > 2000
            if fig.get("consumer_lag_max", 0) == 0 and quiet:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError("the worker did not work off its input")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3, help="CPU spans measured with the same processes")
    parser.add_argument("--stale-after", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "control_plane.json")
    args = parser.parse_args()
    cfg = settings.load()
    run = uuid.uuid4().hex[:8]
    prefix, app = f"bench-cp-{run}.", f"bench-cp-{run}"
    names = worker_topics(Naming(prefix), ("bus",))
    await ensure_topics(cfg.kafka_bootstrap, cfg.topic_partitions, names)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scratch = Path(tempfile.mkdtemp(prefix="shfeeds-bench-cp-"))
    thresholds = scratch / "thresholds.toml"
    thresholds.write_text(f'[feeds.bus]\nsources = ["sh-bus"]\nexpected_interval_s = 0.5\n'
                          f"stale_after_s = {args.stale_after}\n")  # fmt: skip
    cli = [sys.executable, "-m", "shfeeds_cli.main"]
    env = {**os.environ, "SHFEEDS_STREAMS_APP_ID": app}
    worker = subprocess.Popen(
        [*cli, "streams", "worker", "--topic-prefix", prefix, "--redis-prefix", app, "--log-level", "WARNING"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    control = subprocess.Popen(
        [*cli, "control-plane", "--web-port", str(port), "--app-id", app, "--topic-prefix", prefix,
         "--feeds", "bus", "--thresholds", str(thresholds), "--data-dir", str(scratch / "data")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    result: dict[str, object] = {"git_sha": git_sha(), "rate": args.rate, "seconds": args.seconds}
    try:
        await wait_http(f"{base}/health")
        await asyncio.sleep(5)  # both settled: consumer groups joined
        idle_before = cpu_s(control.pid)
        await asyncio.sleep(10)
        result["control_plane_idle_cpu_per_s"] = round((cpu_s(control.pid) - idle_before) / 10, 4)
        spans = []
        for _ in range(args.repeat):
            before = (cpu_s(worker.pid), cpu_s(control.pid))
            started = time.monotonic()
            sent = await produce_steadily(cfg.kafka_bootstrap, prefix + raw_topic("bus"), args.rate, args.seconds)
            await drained(base)  # the worker has worked off its input (its lag as the control plane sees it)
            span = time.monotonic() - started
            after = (cpu_s(worker.pid), cpu_s(control.pid))
            worker_cpu, control_cpu = after[0] - before[0], after[1] - before[1]
            spans.append(
                {
                    "records": sent,
                    "span_s": round(span, 1),
                    "worker_cpu_s": round(worker_cpu, 2),
                    "control_plane_cpu_s": round(control_cpu, 2),
                    "share": round(control_cpu / worker_cpu, 4) if worker_cpu else None,
                    "worker_cpu_us_per_record": round(worker_cpu / sent * 1e6, 1) if sent else None,
                }
            )
            print(json.dumps(spans[-1]), file=sys.stderr)
        shares = [s["share"] for s in spans if s["share"] is not None]
        share = statistics.median(shares) if shares else None
        result.update(
            spans=spans,
            control_plane_share_median=share,
            goal_share=GOAL_SHARE,
            goal_met=share is not None and share < GOAL_SHARE,
        )

        # Stall: a source reporting like an adapter, whose data then stops.
        emitter = StatsEmitter(cfg.kafka_bootstrap, prefix)
        await emitter.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for _ in range(20):
                now = time.time_ns() // 1_000_000
                emitter.emit(source_record("sh-bus", "bus", now, 0.5, polls=1, records=100, last_success_ms=now,
                                           last_record_ms=now))  # fmt: skip
                await asyncio.sleep(0.5)
            last_success = time.time_ns() // 1_000_000
            emitter.emit(source_record("sh-bus", "bus", last_success, 0.5, polls=1, records=100,
                                       last_success_ms=last_success, last_record_ms=last_success))  # fmt: skip
            while True:  # the adapter keeps reporting; only the data stops
                now = time.time_ns() // 1_000_000
                emitter.emit(source_record("sh-bus", "bus", now, 0.5, polls=0, last_success_ms=last_success,
                                           last_record_ms=last_success))  # fmt: skip
                async with http.get(f"{base}/health") as r:
                    if r.status == 503:
                        break
                await asyncio.sleep(0.1)
            detected = time.time_ns() // 1_000_000
            async with http.get(f"{base}/health/feeds") as r:
                seen = (await r.json())["feeds"][0]["figures"]
        result["last_seen_after_last_success_ms"] = (seen["last_seen_ms"] or 0) - last_success
        await emitter.stop()
        result.update(
            stale_after_s=args.stale_after,
            stall_to_503_s=round((detected - last_success) / 1000, 2),
            beyond_threshold_s=round((detected - last_success) / 1000 - args.stale_after, 2),
        )
    finally:
        for proc in (worker, control):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        existing = [*names, prefix + "ops.stats", prefix + "ops.alerts"]
        await delete_topics(cfg.kafka_bootstrap, existing)
    text = json.dumps(result)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(text + "\n", encoding="utf-8")
    if not result.get("goal_met"):
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
