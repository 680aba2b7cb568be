"""Rate ramp for the stream worker: offer bus records at rising rates in real time and find its capacity.

Records are produced at each step's rate with event time = send time, so the delayed tiers really hold
them in Kafka until due. A reader follows the four tier topics; a record's latency is the moment it is read
minus its send time, minus the tier's delay for the delayed tiers (judged against their due time). Each
step's records are the ones sent during it, wherever they arrive. Once a second the clean stage's consumer
lag on raw.bus is sampled. A step passes when every tier's p99 ≤ 500 ms and the lag does not grow
(bench/pipeline/ramp_report.py); the knee is the highest rate at which it and every lower step passed.
A failing step is offered once more (the machine is shared; the table shows both), and the ramp stops
when it fails again and waits for the delayed tiers. Then fresh workers on fresh topics (no backlog left
from the overload) hold 80 % of the knee to check the goal there.

Run (needs the stack): .venv/bin/python -m bench.pipeline.ramp [--workers 1,2] [--rates 2000,4000,...]
    [--step-seconds 20] [--hold-seconds 40]
Writes bench/results/pipeline-ramp-*.json and the generated sections of docs/benchmarks-pipeline.md and
docs/benchmarks.md; ``--render RESULT.json`` writes them again from a saved result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import settings
from access.identity import kafka_options
from bench.pipeline.outputs import ENTITIES, bus_record
from bench.pipeline.ramp_report import (
    HOLD_SHARE,
    P99_LIMIT_MS,
    PAGE,
    SUMMARY,
    goals,
    knee,
    lag_growing,
    lag_slope,
    page_body,
    percentiles,
    summary_body,
)
from bench.pipeline.run import cpu_seconds, delete_redis_keys, stop_workers
from bench.pipeline.variants import load_engine
from bench.report import conclude, machine, publish_section, stamp
from kafka_admin import delete_topics, ensure_topics
from schemas import TIERS, Naming, now_ms, raw_topic
from streams.stages.worker import worker_topics

VARIANTS_PY = Path(__file__).with_name("variants.py")
PARTITIONS = 4
TICK_S = 0.05


class Ramp:
    """One worker configuration's ramp on its own topic prefix."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.naming = Naming(prefix)
        engine = load_engine()
        self.delay = {t: engine.delay_ms("bus", t) for t in TIERS}
        self.raw = prefix + raw_topic("bus")
        self.group = prefix + "app-clean"  # the clean stage's consumer group (streams.config.group)
        # per tier: (send time, latency ms) arrays, appended batch by batch
        self.arrivals: dict[str, list[np.ndarray]] = {t: [] for t in TIERS}
        self.lag: list[tuple[float, int]] = []  # (monotonic time, clean-stage lag)
        self.sent = 0
        self.loads: dict[int, float] = {}  # step start (ms) → 1-minute load average at its end
        self.stop = asyncio.Event()

    async def read(self, consumer: AIOKafkaConsumer) -> None:
        tier_of = {self.naming.tier_topic(t, "bus"): t for t in TIERS}
        while not self.stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            t = now_ms()
            for tp, recs in batch.items():
                tier = tier_of[tp.topic]
                sent = np.fromiter((r.timestamp for r in recs), dtype=np.int64, count=len(recs))
                self.arrivals[tier].append(np.stack([sent, t - sent - self.delay[tier]]))

    async def sample_lag(self, admin: AIOKafkaAdminClient, probe: AIOKafkaConsumer) -> None:
        tps = [TopicPartition(self.raw, p) for p in range(PARTITIONS)]
        while not self.stop.is_set():
            ends = await probe.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(self.group)
            done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
            self.lag.append((time.monotonic(), sum(ends[tp] - done.get(tp, 0) for tp in tps)))
            await asyncio.sleep(1.0)

    async def offer(self, producer: AIOKafkaProducer, rate: int, seconds: float) -> tuple[int, int, int]:
        """Send ``rate`` records/s for ``seconds``; (first send ms, last send ms, records sent)."""
        per_tick = max(1, round(rate * TICK_S))
        start_ms, start, sent0 = now_ms(), time.monotonic(), self.sent
        tick_no = 0
        while time.monotonic() - start < seconds:
            for _ in range(per_tick):
                entity = self.sent % ENTITIES
                ts = now_ms()
                await producer.send(
                    self.raw,
                    bus_record(entity, self.sent // ENTITIES, ts, "ramp"),
                    key=f"ramp-{entity}".encode(),
                    timestamp_ms=ts,
                )
                self.sent += 1
            tick_no += 1
            await asyncio.sleep(max(0.0, start + tick_no * TICK_S - time.monotonic()))
        self.loads[start_ms] = os.getloadavg()[0]  # what else the shared machine was doing meanwhile
        return start_ms, now_ms(), self.sent - sent0

    def step(self, rate: int, window: tuple[int, int, int], lag_from: float, lag_to: float) -> dict[str, Any]:
        """The verdict on the records sent in ``window``, with the lag sampled between the two times."""
        lo, hi, sent = window
        tiers = {}
        for tier in TIERS:
            arr = np.concatenate(self.arrivals[tier], axis=1) if self.arrivals[tier] else np.zeros((2, 0))
            mask = (arr[0] >= lo) & (arr[0] <= hi)
            tiers[tier] = {"received": int(mask.sum()), **percentiles(arr[1][mask])}
        samples = [s for s in self.lag if lag_from <= s[0] <= lag_to]
        offered = sent / max((hi - lo) / 1000, 1e-3)
        return {
            "rate": rate,
            "sent": sent,
            "offered_per_s": round(offered),
            "tiers": tiers,
            "lag_end": samples[-1][1] if samples else 0,
            "lag_slope_per_s": round(lag_slope(samples)),
            "lag_growing": lag_growing(samples, offered),
            "load_1min": self.loads.get(lo),
        }

    async def drain(self, rate: float, timeout: float) -> None:
        """Wait until the clean stage is less than a second of input behind (or ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            if self.lag and self.lag[-1][1] < max(rate, 1000):
                return


@contextlib.asynccontextmanager
async def session(workers: int, tag: str, args: argparse.Namespace) -> AsyncIterator[Session]:
    """Fresh topics and ``workers`` stream worker processes, the reader and the lag sampler running, warmed up
    (groups joined, then 5 s of traffic at the lowest rate that is not judged); all removed afterwards."""
    s = settings.load()
    prefix = f"ramp-{uuid.uuid4().hex[:6]}-{tag}."
    names = worker_topics(Naming(prefix), ("bus",), aggregates=False)
    await ensure_topics(s.kafka_bootstrap, PARTITIONS, names)
    ramp = Ramp(s.kafka_bootstrap, prefix)
    cmd = [sys.executable, str(VARIANTS_PY), "pipeline", "--prefix", prefix, "--bootstrap", s.kafka_bootstrap]
    cmd += ["--redis", s.redis_url, "--seconds", "3600", "--max-poll", str(args.max_poll)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    tier_tps = [TopicPartition(ramp.naming.tier_topic(t, "bus"), p) for t in TIERS for p in range(PARTITIONS)]
    auth = kafka_options(s)
    reader = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, **auth, enable_auto_commit=False)
    probe = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, **auth)
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, **auth)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, **auth, linger_ms=5, max_batch_size=256 * 1024)
    tasks: list[asyncio.Task[None]] = []
    try:
        for client in (reader, probe, admin, producer):
            await client.start()
        reader.assign(tier_tps)
        await reader.seek_to_end(*tier_tps)
        tasks += [asyncio.create_task(ramp.read(reader)), asyncio.create_task(ramp.sample_lag(admin, probe))]
        await asyncio.sleep(args.warmup_seconds)
        await ramp.offer(producer, args.rates[0], 5.0)
        yield Session(ramp, producer, procs)
    finally:
        ramp.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (reader, probe, admin, producer):
            await client.close() if client is admin else await client.stop()
        stop_workers(procs)
        await delete_topics(s.kafka_bootstrap, names)
        await delete_redis_keys(s.redis_url, prefix)


@dataclass
class Session:
    ramp: Ramp
    producer: AIOKafkaProducer
    procs: list[subprocess.Popen[bytes]]

    async def settle(self) -> None:
        """Until every delayed tier has had time to release what was sent."""
        await self.producer.flush()
        await asyncio.sleep(max(self.ramp.delay.values()) / 1000 + 3)

    def cpu(self, since: tuple[float, float, float]) -> dict[str, float]:
        cpu0, own0, t0 = since
        elapsed = time.monotonic() - t0
        return {
            "worker_cpu_cores": round((cpu_seconds(self.procs) - cpu0) / elapsed, 2),
            "driver_cpu_cores": round((_own_cpu() - own0) / elapsed, 2),
        }

    def mark(self) -> tuple[float, float, float]:
        return cpu_seconds(self.procs), _own_cpu(), time.monotonic()


async def run_ramp(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """The ramp on one set of workers, then the hold at 80 % of its knee on fresh ones: the ramp ends past
    the knee, and the backlog that leaves in the pending topics would weigh on the hold."""
    result: dict[str, Any] = {"workers": workers}
    async with session(workers, f"w{workers}", args) as sess:
        ramp, since = sess.ramp, sess.mark()
        windows = []
        for rate in args.rates:
            for attempt in range(2):
                began = time.monotonic()
                window = await ramp.offer(sess.producer, rate, args.step_seconds)
                windows.append((rate, window, began, time.monotonic()))
                # judged at once on what has arrived (the undelayed tiers, the lag)
                failed = _undelayed_failed(ramp.step(rate, window, began, time.monotonic()), ramp.delay)
                if any(p.poll() is not None for p in sess.procs):
                    raise RuntimeError("the worker exited during the ramp")
                if not failed or attempt:
                    break
                # the machine is shared: a failing step is offered once more, once the backlog is gone
                await ramp.drain(rate, 30.0)
            if failed:
                break  # past the knee
        await sess.settle()
        result["steps"] = [ramp.step(r, w, a, b) for r, w, a, b in windows]
        result.update(sess.cpu(since))
    result["knee"] = knee(result["steps"])
    if result["knee"]:
        rate = round(result["knee"] * HOLD_SHARE)
        async with session(workers, f"w{workers}-hold", args) as sess:
            since, began = sess.mark(), time.monotonic()
            window = await sess.ramp.offer(sess.producer, rate, args.hold_seconds)
            ended = time.monotonic()
            await sess.settle()
            result["hold"] = sess.ramp.step(rate, window, began, ended)
            result["hold_cpu"] = sess.cpu(since)
    return result


def _undelayed_failed(step: dict[str, Any], delay: dict[str, int]) -> bool:
    """During the ramp only the undelayed tiers and the lag are known: stop when they already fail."""
    p99s = [step["tiers"][t]["p99_ms"] for t in TIERS if not delay[t]]
    return step["lag_growing"] or any(p is None or p > P99_LIMIT_MS for p in p99s)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def publish(result: dict[str, Any], path: Path) -> None:
    publish_section(PAGE, "bench:pipeline-ramp", page_body(result, path.name))
    publish_section(SUMMARY, "bench:pipeline-ramp-summary", summary_body(result, path.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1", help="worker counts to ramp, e.g. 1,2")
    parser.add_argument("--rates", default="2000,4000,6000,8000,10000,12000,14000,17000,20000,24000")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--hold-seconds", type=float, default=40.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--max-poll", type=int, default=2000)
    parser.add_argument("--render", type=Path, help="publish this saved result; measure nothing")
    parser.add_argument("--no-publish", action="store_true", help="write the result JSON only")
    parser.add_argument("--quick", action="store_true", help="three 10 s steps and a 15 s hold, not published")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.step_seconds, args.hold_seconds, args.no_publish = "2000,6000,12000", 10.0, 15.0, True
    if args.render:
        publish(json.loads(args.render.read_text()), args.render)
        return
    args.rates = [int(r) for r in args.rates.split(",")]
    if args.rates != sorted(args.rates) or args.rates[0] <= 0:
        raise SystemExit("--rates must be positive and rising")
    result: dict[str, Any] = {"bench": "pipeline-ramp", **stamp(), "machine": machine()}
    result.update(tiers=list(TIERS), step_seconds=args.step_seconds, hold_seconds=args.hold_seconds)
    result["runs"] = []
    for workers in (int(w) for w in args.workers.split(",")):
        run = asyncio.run(run_ramp(workers, args))
        print(json.dumps(run), flush=True)
        result["runs"].append(run)
    conclude(result, None if args.no_publish else publish, goals)


if __name__ == "__main__":
    main()
