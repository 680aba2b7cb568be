"""Benchmark: the control plane's cost next to the pipeline it watches, and how fast it sees a stall.

1. CPU: a stream worker (its own process, ops stats on) works through a backlog of bus records at its
   sustained rate (the records are in the raw topic before it starts; the span runs from its first
   committed batch to its last, read from the group's committed offsets so the bench does not load the
   control plane); the control plane (its own process) folds the worker's per-batch stats. CPU seconds
   of each process over the same span are read from /proc; the goal is the control plane under 5 % of
   the worker's. With ``--rate`` the records arrive at that steady rate instead (the control plane's
   fixed idle cost then weighs more against a worker that is mostly idle).
2. Stall → /health: a source reports every 0.5 s as an adapter does, then stops having data; the time
   from its last successful poll to /health answering 503 is measured against the feed's threshold.

The CPU span is repeated ``--repeat`` times (fresh processes and topics each time), so the machine's
other load (it is shared) falls on both alike within a span; the share is the median of the ratios.

Usage: .venv/bin/python bench/control_plane.py [--records 300000] [--repeat 3] [--rate 0] [--stale-after 5]
Prints one JSON object (with the git SHA and whether the goal is met) and writes it to ``--json``
(default: ``control_plane.json`` in the ignored results folder beside this script); exit code 1 when
the goal is missed. Results are kept in docs/benchmarks-control-plane.md.
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from access.identity import kafka_options  # noqa: E402
from control_plane.emitter import StatsEmitter  # noqa: E402
from control_plane.figures import source_record  # noqa: E402
from kafka_admin import delete_topics_under, ensure_topics  # noqa: E402
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
IDLE_S = 10.0


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), linger_ms=5)
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


async def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        now = time.time_ns() // 1_000_000
        for sent in range(count):
            entity = sent % FLEET
            await producer.send(
                topic, record(entity, sent // FLEET, now), key=f"bus-{entity}".encode(), timestamp_ms=now
            )
        await producer.flush()
    finally:
        await producer.stop()


async def committed_and_end(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """Records the group has committed on the topic, and the records in it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    await admin.start()
    await consumer.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        ends = await consumer.end_offsets(parts)
        done = sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)
        return done, sum(ends.values())
    finally:
        await consumer.stop()
        await admin.close()


async def sustained_span(cfg: settings.Settings, args: argparse.Namespace) -> dict[str, object]:
    """One worker and one control plane, fresh topics; CPU over the worker's work on a backlog."""
    run = uuid.uuid4().hex[:8]
    prefix, app = f"bench-cp-{run}.", f"bench-cp-{run}"
    names = worker_topics(Naming(prefix), ("bus",))
    await ensure_topics(cfg.kafka_bootstrap, cfg.topic_partitions, names)
    raw = prefix + raw_topic("bus")
    await produce_backlog(cfg.kafka_bootstrap, raw, args.records)
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="shfeeds-bench-cp-"))
    cli = [sys.executable, "-m", "shfeeds_cli.main"]
    env = {**os.environ, "SHFEEDS_STREAMS_APP_ID": app}
    control = subprocess.Popen(
        [*cli, "control-plane", "--web-port", str(port), "--app-id", app, "--topic-prefix", prefix,
         "--feeds", "bus", "--data-dir", str(scratch / "data")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker: subprocess.Popen[bytes] | None = None
    try:
        await wait_http(f"http://127.0.0.1:{port}/health")
        await asyncio.sleep(3)  # its groups joined
        idle_from = cpu_s(control.pid)
        await asyncio.sleep(IDLE_S)  # its fixed cost, with nothing to fold
        idle_per_s = (cpu_s(control.pid) - idle_from) / IDLE_S
        worker = subprocess.Popen(
            [*cli, "streams", "worker", "--topic-prefix", prefix, "--redis-prefix", app, "--log-level", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        group = f"{app}-clean"
        deadline = time.monotonic() + 600
        while (await committed_and_end(cfg.kafka_bootstrap, group, raw))[0] == 0:  # started: imports done
            assert time.monotonic() < deadline, "the worker never committed"
            await asyncio.sleep(0.2)
        before = (cpu_s(worker.pid), cpu_s(control.pid))
        first, end = await committed_and_end(cfg.kafka_bootstrap, group, raw)
        started = time.monotonic()
        while (done := (await committed_and_end(cfg.kafka_bootstrap, group, raw))[0]) < end:
            assert time.monotonic() < deadline, "the worker did not work off its backlog"
            await asyncio.sleep(0.5)
        span = time.monotonic() - started
        await asyncio.sleep(1.0)  # the last bundle of stats reaches the control plane
        after = (cpu_s(worker.pid), cpu_s(control.pid))
        worker_cpu, control_cpu = after[0] - before[0], after[1] - before[1]
        n = done - first
        return {
            "records": n,
            "span_s": round(span, 1),
            "records_per_s": round(n / span) if span else None,
            "worker_cpu_s": round(worker_cpu, 2),
            "control_plane_cpu_s": round(control_cpu, 3),
            "share": round(control_cpu / worker_cpu, 4) if worker_cpu else None,
            "worker_cpu_us_per_record": round(worker_cpu / n * 1e6, 1) if n else None,
            # What folding the stats costs beyond the control plane's idle cost (measured just before).
            "control_plane_idle_cpu_per_s": round(idle_per_s, 4),
            "marginal_share": round((control_cpu - idle_per_s * (span + 1.0)) / worker_cpu, 4) if worker_cpu else None,
        }
    finally:
        for proc in (worker, control):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await delete_run_topics(cfg.kafka_bootstrap, prefix, app)


async def delete_run_topics(bootstrap: str, prefix: str, app: str) -> None:
    """Every topic of one run: the worker's (all feeds), the control plane's inputs and its changelogs."""
    await delete_topics_under(bootstrap, prefix, app + "-")


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
    parser.add_argument("--records", type=int, default=300_000, help="backlog per sustained span")
    parser.add_argument("--repeat", type=int, default=3, help="CPU spans, each with fresh processes")
    parser.add_argument("--rate", type=int, default=0, help="also measure spans at this steady input rate")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a steady-rate span")
    parser.add_argument("--stale-after", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "control_plane.json")
    args = parser.parse_args()
    cfg = settings.load()
    sustained = []
    for _ in range(args.repeat):
        sustained.append(await sustained_span(cfg, args))
        print(json.dumps(sustained[-1]), file=sys.stderr)
    shares = [s["share"] for s in sustained if isinstance(s["share"], float)]
    share = statistics.median(shares) if shares else None
    marginal = [m for s in sustained if isinstance(m := s["marginal_share"], float)]
    result: dict[str, object] = {
        "git_sha": git_sha(),
        "sustained_spans": sustained,
        "control_plane_share_median": share,
        "marginal_share_median": statistics.median(marginal) if marginal else None,
        "goal_share": GOAL_SHARE,
        "goal_met": share is not None and share < GOAL_SHARE,
        "rate": args.rate or None,
    }
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
    try:
        await wait_http(f"{base}/health")
        await asyncio.sleep(5)  # both settled: consumer groups joined
        idle_before = cpu_s(control.pid)
        await asyncio.sleep(10)
        result["control_plane_idle_cpu_per_s"] = round((cpu_s(control.pid) - idle_before) / 10, 4)
        spans = []
        for _ in range(args.repeat if args.rate else 0):
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
        steady = [s["share"] for s in spans if isinstance(s["share"], float)]
        result.update(steady_spans=spans, steady_share_median=statistics.median(steady) if steady else None)

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
        await delete_run_topics(cfg.kafka_bootstrap, prefix, app)
    text = json.dumps(result)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(text + "\n", encoding="utf-8")
    if not result.get("goal_met"):
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
