"""Benchmark: replay and export against a plain consumer reading the same tier topic, in the same run.

A tier topic of bus records (4 partitions, timestamps written slightly out of order as a real tier topic
has them) is read by:
  (a) a plain aiokafka consumer: every record from the first offset to the end, nothing decoded;
  (b) a replay at ``max`` speed through the replay core (exact event-time merge, as-of snapshot, deltas);
  (c) exports of the same range to NDJSON and to Parquet (``shfeeds replay --out``);
  (d) the archiver writing the topic to its Parquet files (records/s and bytes per record).
Goal (issue 12): replay at max ≥ 0.5× the plain consumer. Prints and writes JSON with the git SHA.

Run: .venv/bin/python -m bench.replay_export [--records 300000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import settings as settings_mod
from access.identity import kafka_options
from archive.archiver import Archiver
from archive.config import ArchiveConfig
from archive.layout import files_of
from kafka_admin import delete_topics, ensure_topics
from replay.core import ReplayCore
from replay.export import Export
from replay.kafka_source import KafkaTierSource
from replay.runner import ReplayRunner
from schemas import TIERS, tier_topic
from shfeeds_cli import stack
from streams.policy import load_policy
from streams.policy.record_schema import tier_record_schema

T0 = 1_796_000_000_000
PARTITIONS = 4
SKEW_MS = 120_000
CPU_SECONDS: list[tuple[str, float]] = []  # (what, this process's CPU seconds) per read, in run order


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def bus_value(i: int, t: int) -> dict[str, Any]:
    return {
        "id": f"bus-{i % 3000:04d}",
        "source": "bench",
        "observed_at": t,
        "expires_at": t + 120_000,
        "lng": round(121.3 + (i * 7919 % 4000) / 10_000, 6),
        "lat": round(31.1 + (i * 104729 % 3000) / 10_000, 6),
        "mode": "bus",
        "route_id": str(i % 400),
        "trip_id": f"t{i % 9000}",
        "direction_id": i % 2,
        "label": f"沪B-{i % 3000:05d}",
        "bearing": float(i * 45 % 360),
        "occupancy_status": "MANY_SEATS_AVAILABLE",
        "stop_id": f"s{i % 5000}",
        "delay_s": i % 300 - 100,
        "crs": "gcj02",
        "policy_version": "2026.11.2",
    }


async def fill(bootstrap: str, topic: str, records: int) -> tuple[int, int]:
    encode = msgspec.msgpack.Encoder().encode
    rng = random.Random(12)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **kafka_options(),
        linger_ms=20,
        max_batch_size=1 << 20,
        acks=1,
        compression_type=None,
    )
    await producer.start()
    try:
        pending = []
        for i in range(records):
            t = T0 + i * 10 - rng.randrange(0, 30_000)  # 100 records/s of event time, up to 30 s late
            v = bus_value(i, t)
            pending.append(
                await producer.send(topic, encode(v), key=v["id"].encode(), partition=i % PARTITIONS, timestamp_ms=t)
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return T0 - 30_000, T0 + records * 10 + 1


async def plain_consumer(bootstrap: str, topic: str) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        t0, c0 = time.perf_counter(), time.process_time()
        n = 0
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            for tp, recs in (await consumer.getmany(timeout_ms=200, max_records=20_000)).items():
                n += len(recs)
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    done.add(tp)
        CPU_SECONDS.append(("plain", time.process_time() - c0))
        return n, time.perf_counter() - t0
    finally:
        await consumer.stop()


class CountingSink:
    def __init__(self, export: Export | None = None) -> None:
        self.records = 0
        self.export = export

    def emit(self, message: dict[str, Any]) -> None:
        if message["type"] == "replay_delta":
            self.records += len(message["records"] if "records" in message else message["raw"])
            if self.export is not None:
                self.export.write(message["records"])


async def replay_max(
    bootstrap: str, topic: str, start: int, end: int, export: Export | None = None, raw: bool = False
) -> tuple[int, float]:
    source = KafkaTierSource(bootstrap, topic)
    partitions = await source.open()
    sink = CountingSink(export)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        core = ReplayCore(
            partitions=partitions, from_ms=start, to_ms=end, max_skew_ms=SKEW_MS, lookback_ms=0, sink=sink, raw=raw
        )
        await ReplayRunner(core, source).run()
        elapsed = time.perf_counter() - t0
        CPU_SECONDS.append(("raw" if raw else "export" if export is not None else "replay", time.process_time() - c0))
    finally:
        await source.close()
        if export is not None:
            export.close()
    return sink.records, elapsed


async def archive_topic(bootstrap: str, prefix: str, root: Path, records: int) -> tuple[int, float, int]:
    config = ArchiveConfig(
        root=root,
        bootstrap=bootstrap,
        topic_prefix=prefix,
        group_id=prefix + "archiver",
        feeds=("bus",),
        tiers=("public",),
        flush_records=100_000,
        flush_interval_s=3600,
    )
    archiver = Archiver(config)
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(archiver.run(stop))
    while archiver.records_archived + sum(w.pending for w in archiver.writers.values()) < records:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    elapsed = time.perf_counter() - t0
    size = sum(f.path.stat().st_size for f in files_of(root, "bus", "public"))
    return archiver.records_archived, elapsed, size


def rate(n: int, s: float) -> float:
    return round(n / s, 1) if s > 0 else 0.0


async def run(records: int, rounds: int) -> dict[str, Any]:
    settings = settings_mod.load()
    bootstrap = settings.kafka_bootstrap
    prefix = f"bench-replay-{uuid.uuid4().hex[:8]}."
    topic = prefix + tier_topic("public", "bus")
    await ensure_topics(bootstrap, PARTITIONS, [prefix + tier_topic(t, "bus") for t in TIERS])
    try:
        start, end = await fill(bootstrap, topic, records)
        # alternate the plain consumer and the replay, best of each: the machine is shared and its load drifts
        plains, replays, raws = [], [], []
        for _ in range(rounds):
            plains.append(await plain_consumer(bootstrap, topic))
            replays.append(await replay_max(bootstrap, topic, start, end))
            raws.append(await replay_max(bootstrap, topic, start, end, raw=True))
        n_plain, s_plain = min(plains, key=lambda x: x[1])
        n_replay, s_replay = min(replays, key=lambda x: x[1])
        schema = tier_record_schema(load_policy(), "bus", "public")
        with tempfile.TemporaryDirectory() as tmp:
            n_nd, s_nd = await replay_max(bootstrap, topic, start, end, Export(Path(tmp) / "x.ndjson", schema))
            nd_bytes = (Path(tmp) / "x.ndjson").stat().st_size
            n_pq, s_pq = await replay_max(bootstrap, topic, start, end, Export(Path(tmp) / "x.parquet", schema))
            pq_bytes = (Path(tmp) / "x.parquet").stat().st_size
            n_arch, s_arch, arch_bytes = await archive_topic(bootstrap, prefix, Path(tmp) / "archive", records)
        # a second plain read, so a drift in machine load between the first and the last shows
        n_plain2, s_plain2 = await plain_consumer(bootstrap, topic)
    finally:
        await delete_topics(bootstrap, [prefix + tier_topic(t, "bus") for t in TIERS])
    plain = max(rate(n_plain, s_plain), rate(n_plain2, s_plain2))
    result = {
        "bench": "replay_export",
        "git_sha": git_sha(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "records": records,
        "partitions": PARTITIONS,
        "rounds": rounds,
        "plain_consumer_records_per_s": [rate(n_plain, s_plain), rate(n_plain2, s_plain2)],
        "plain_consumer_all_rounds": [rate(n, s) for n, s in plains],
        "replay_max_all_rounds": [rate(n, s) for n, s in replays],
        # MessagePack clients without a filter: the stored values go out as they are (no decode)
        "replay_max_msgpack_passthrough_all_rounds": [rate(n, s) for n, s in raws],
        "replay_max_msgpack_passthrough_vs_plain_per_round": [
            round(rate(*r) / rate(*q), 3) for q, r in zip(plains, raws, strict=True) if rate(*q) > 0
        ],
        "replay_max_records_per_s": rate(n_replay, s_replay),
        "replay_max_vs_plain": round(rate(n_replay, s_replay) / plain, 3),
        # each round reads plain then replays right after: the pair saw about the same machine load
        "replay_max_vs_plain_per_round": [
            round(rate(*r) / rate(*q), 3) for q, r in zip(plains, replays, strict=True) if rate(*q) > 0
        ],
        "export_ndjson_records_per_s": rate(n_nd, s_nd),
        "export_ndjson_vs_plain": round(rate(n_nd, s_nd) / plain, 3),
        "export_ndjson_bytes_per_record": round(nd_bytes / max(1, n_nd), 1),
        "export_parquet_records_per_s": rate(n_pq, s_pq),
        "export_parquet_vs_plain": round(rate(n_pq, s_pq) / plain, 3),
        "export_parquet_bytes_per_record": round(pq_bytes / max(1, n_pq), 1),
        "archive_records_per_s": rate(n_arch, s_arch),
        "archive_bytes_per_record": round(arch_bytes / max(1, n_arch), 1),
        "records_seen": {"plain": n_plain, "replay": n_replay, "ndjson": n_nd, "parquet": n_pq, "archive": n_arch},
        "goal_replay_max_vs_plain": 0.5,
    }
    # CPU seconds per read: what the machine's other load cannot blur (the broker's share is not in it)
    cpu = {what: [round(c, 3) for w, c in CPU_SECONDS if w == what] for what in ("plain", "replay", "raw")}
    result["cpu_seconds_per_round"] = cpu
    result["replay_max_vs_plain_by_cpu_per_round"] = [
        round(p / r, 3) for p, r in zip(cpu["plain"], cpu["replay"], strict=False) if r > 0
    ]
    paired = sorted(rate(*r) / rate(*q) for q, r in zip(plains, replays, strict=True) if rate(*q) > 0)
    result["replay_max_vs_plain_median_of_rounds"] = round(paired[len(paired) // 2], 3) if paired else 0.0
    result["goal_met"] = bool(paired) and paired[len(paired) // 2] >= 0.5
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3, help="plain and replay runs, alternated; best of each")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    stack.up(settings_mod.load(), quiet=True)
    result = asyncio.run(run(args.records, args.rounds))
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    verdict = "met" if result["goal_met"] else "NOT met"
    print(f"goal (decoded replay at max >= 0.5x the plain consumer, median of rounds): {verdict}")
    if not result["goal_met"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
