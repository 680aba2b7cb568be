"""Benchmark: raw.bus → all four tier topics, the stream worker against two baselines in the same run.

For each variant (see variants.py) on its own topic prefix:
1. throughput: a backlog of bus records (old event times, so the delayed tiers may release at once) is
   loaded into raw.bus; the variant is started; records/s = backlog / (last tier write − first tier write);
   sustained = the same over the middle 60 % of the tier output.
2. latency (undelayed tiers): records are produced at a steady rate with event time = send time; the
   latency of a record is the time it is read from tier.operator/licensed.bus minus its send time.

Usage: .venv/bin/python bench/pipeline/run.py [--records 200000] [--faust-records 20000] [--rate 5000]
       [--workers 2] [--variants pipeline,plain,faust]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from access.identity import kafka_options  # noqa: E402
from bench.pipeline.outputs import ENTITIES, backlog, bus_record  # noqa: E402
from bench.report import median_of  # noqa: E402
from kafka_admin import delete_topics, ensure_topics  # noqa: E402
from schemas import TIERS, Naming, now_ms, raw_topic  # noqa: E402
from streams.stages.worker import worker_topics  # noqa: E402


async def preload(bootstrap: str, topic: str, count: int) -> None:
    """The backlog (bench/pipeline/outputs.py) with event times 4 hours old, so every delay has passed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **kafka_options(), linger_ms=20, max_batch_size=512 * 1024, acks="all"
    )
    await producer.start()
    try:
        futures = []
        for key, value, ts in backlog(count, now_ms() - 4 * 3_600_000):
            futures.append(await producer.send(topic, value, key=key, timestamp_ms=ts, headers=[("source", b"bench")]))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU time the worker processes have used so far (Linux /proc)."""
    total = 0
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """Ask every worker to stop, then wait for each (killing one that takes more than 20 s)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


THROUGHPUT_FIGURES = ("records_per_s", "sustained_per_s", "cpu_us_per_record")


def throughput_medians(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """Per variant, the median of each throughput figure over its runs (runs that failed left out)."""
    return {v: {k: median_of(rs, k) for k in THROUGHPUT_FIGURES} for v, rs in runs.items()}


def machine_times() -> tuple[int, int]:
    """(steal, total) jiffies of the whole machine: the share the hypervisor took from this VM."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[7], sum(values[:8])


async def delete_redis_keys(url: str, prefix: str) -> None:
    """Remove the run's Redis state: left behind, it grows the store by hundreds of megabytes a run and
    makes Redis rewrite its append-only file in the middle of later measurements."""
    client = aioredis.Redis.from_url(url)
    try:
        batch = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(batch), 1000):
            await client.unlink(*batch[start : start + 1000])
    finally:
        await client.aclose()


async def tier_total(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> int:
    ends = await consumer.end_offsets(tps)
    return sum(ends.values())


def _at(samples: list[tuple[float, ...]], level: float) -> tuple[float, ...]:
    """The sample row (time, output, cpu, steal, total) where the output first reaches ``level``, linearly
    interpolated between the two samples around it."""
    for before, after in itertools.pairwise(samples):
        if after[1] >= level:
            span = after[1] - before[1]
            w = (level - before[1]) / span if span else 1.0
            return tuple(b + w * (a - b) for b, a in zip(before, after, strict=True))
    return samples[-1]


async def measure_throughput(bootstrap: str, prefix: str, count: int, procs: list[subprocess.Popen[bytes]]) -> dict:
    """Rates and CPU from one run: ``records_per_s`` = backlog / (last tier write − first tier write), start-up
    and consumer-group joins included; ``sustained_per_s`` = the middle 60 % of the work (from 20 % to 80 % of
    everything the run wrote to the four tier topics, delayed tiers included) in backlog records / the time it
    took, i.e. the steady rate once every worker and stage runs."""
    tps = [TopicPartition(Naming(prefix).tier_topic(t, "bus"), p) for t in TIERS for p in range(4)]
    op_tps = [tp for tp in tps if ".operator." in tp.topic]
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    await probe.start()
    try:
        first = last = None
        previous = 0
        quiet_since = time.monotonic()
        # (time, tier records so far, worker CPU seconds, machine steal jiffies, machine jiffies)
        samples: list[tuple[float, ...]] = []
        while True:
            await asyncio.sleep(0.2)
            total = await tier_total(probe, tps)
            operator = await tier_total(probe, op_tps)
            t = time.monotonic()
            samples.append((t, float(total), cpu_seconds(procs), *map(float, machine_times())))
            if total > previous:
                first = first or t
                last, previous, quiet_since = t, total, t
            if operator >= count and t - quiet_since > 3.0:
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("variant exited early")
            if first is None and t - quiet_since > 120:
                raise RuntimeError("no output after 120 s")
        assert first is not None and last is not None
        # The first sample already contains one poll interval of work.
        elapsed = max(last - first + 0.2, 1e-3)
        lo, hi = _at(samples, 0.2 * previous), _at(samples, 0.8 * previous)
        # From the last sample before any output to the first that held all of it: the whole backlog's work.
        start = next((row for row in reversed(samples) if row[1] == 0), samples[0])
        end = next(row for row in samples if row[1] >= previous)
        middle = max(hi[0] - lo[0], 0.2)
        return {
            "records": count,
            "tier_records": previous,
            "seconds": round(elapsed, 2),
            "records_per_s": round(count / elapsed),
            "sustained_per_s": round(0.6 * count / middle),
            # CPU the workers spent per backlog record in the middle 60 %: far less sensitive than the rates
            # to what else runs on the machine, so it is the figure to compare code changes by.
            "cpu_us_per_record": round((hi[2] - lo[2]) / (0.6 * count) * 1e6, 1),
            # The same over the whole drain, first batch and last delayed release included: no assumption that
            # output and work keep pace, which a second trip through Kafka does not guarantee.
            "cpu_us_per_record_whole": round((end[2] - start[2]) / count * 1e6, 1),
            # CPU time the hypervisor gave other guests while this VM wanted it, over the same span.
            "steal_pct": round(100 * (hi[3] - lo[3]) / max(hi[4] - lo[4], 1.0), 1),
        }
    finally:
        await probe.stop()


async def measure_latency(bootstrap: str, prefix: str, rate: int, seconds: float) -> dict:
    topics = [Naming(prefix).tier_topic(t, "bus") for t in ("operator", "licensed")]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, **kafka_options(), auto_offset_reset="latest")
    await consumer.start()
    await asyncio.sleep(1.0)
    latencies: list[int] = []
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            t = now_ms()
            for recs in batch.values():
                latencies.extend(t - r.timestamp for r in recs if r.key and r.key.startswith(b"live"))

    reader = asyncio.create_task(read())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), linger_ms=5)
    await producer.start()
    sent = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            tick = time.monotonic()
            for _ in range(rate // 20):
                entity = sent % ENTITIES
                ts = now_ms()
                await producer.send(
                    prefix + raw_topic("bus"),
                    bus_record(entity, sent // ENTITIES, ts, "live"),
                    key=f"live-{entity}".encode(),
                    timestamp_ms=ts,
                )
                sent += 1
            await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
        await producer.flush()
        await asyncio.sleep(3.0)
    finally:
        stop.set()
        await reader
        await producer.stop()
        await consumer.stop()
    arr = np.array(latencies or [0])
    return {
        "sent": sent,
        "received_undelayed": len(latencies),
        "p50_ms": int(np.percentile(arr, 50)),
        "p99_ms": int(np.percentile(arr, 99)),
        "max_ms": int(arr.max()),
    }


async def bench_variant(variant: str, count: int, args: argparse.Namespace) -> dict:
    s = settings.load()
    prefix = f"bench-{uuid.uuid4().hex[:6]}-{variant}."
    names = worker_topics(Naming(prefix), ("bus",), aggregates=False)
    await ensure_topics(s.kafka_bootstrap, 4, names)
    await preload(s.kafka_bootstrap, prefix + raw_topic("bus"), count)
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("variants.py")),
        variant,
        "--prefix",
        prefix,
        "--bootstrap",
        s.kafka_bootstrap,
        "--redis",
        s.redis_url,
        "--seconds",
        "600",
        "--max-poll",
        str(args.max_poll),
    ]
    # One process per worker, all in one consumer group: partitions are the unit of parallelism.
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(args.workers)]
    try:
        result = {"variant": variant, "workers": args.workers}
        result.update(await measure_throughput(s.kafka_bootstrap, prefix, count, procs))
        if not variant.startswith("faust") or args.faust_latency:
            result.update(await measure_latency(s.kafka_bootstrap, prefix, args.rate, args.latency_seconds))
    finally:
        stop_workers(procs)
        # The run's topics would otherwise pile up on the shared broker (open files per partition).
        await delete_topics(s.kafka_bootstrap, names)
        await delete_redis_keys(s.redis_url, prefix)
        # Let the broker finish removing them before the next variant is measured.
        await asyncio.sleep(args.settle_seconds)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--faust-records", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=5000, help="records/s in the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--forward-records", type=int, default=60_000, help="backlog for faust-forward")
    parser.add_argument("--faust-latency", action="store_true")
    parser.add_argument("--settle-seconds", type=float, default=5.0, help="pause after each variant's clean-up")
    parser.add_argument("--variants", default="pipeline,plain,faust")
    parser.add_argument("--max-poll", type=int, default=2000, help="records per batch (pipeline and plain)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per variant (one per core)")
    args = parser.parse_args()
    results = []
    for variant in args.variants.split(","):
        count = {"faust": args.faust_records, "faust-forward": args.forward_records}.get(variant, args.records)
        result = await bench_variant(variant, count, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    by = {r["variant"]: r for r in results}
    if "pipeline" in by:
        for figure in ("records_per_s", "sustained_per_s"):
            p = by["pipeline"][figure]
            for base in ("plain", "faust", "faust-forward"):
                if base in by:
                    print(f"pipeline / {base} ({figure}): {p / by[base][figure]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
