"""Stream processing peer: our stream worker and the same job in Quix Streams, alternated on the same input.

Each round gives every variant a fresh topic prefix with the same backlog of bus records (bench/pipeline/run.py
makes and measures it; the variants are in bench/pipeline/variants.py), measures its records/s and CPU per
record, then reads back every tier topic: the per-tier output counts must be equal across variants and no
tier may hold the same (key, value) twice. The figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

import settings
from access.identity import kafka_options
from bench.pipeline.run import delete_redis_keys, measure_throughput, preload
from bench.report import median_of
from kafka_admin import delete_topics, ensure_topics
from schemas import TIERS, Naming, raw_topic
from streams.stages.worker import worker_topics

VARIANTS = ("pipeline", "quix")
VARIANTS_PY = Path(__file__).resolve().parents[1] / "pipeline/variants.py"


async def tier_output(bootstrap: str, prefix: str) -> dict[str, dict[str, int]]:
    """Per tier: records written, and how many of them repeat a (key, value) already in that tier."""
    out: dict[str, dict[str, int]] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        for tier in TIERS:
            topic = Naming(prefix).tier_topic(tier, "bus")
            tps = [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            seen: Counter[tuple[bytes | None, bytes | None]] = Counter()
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for recs in batch.values():
                    seen.update((r.key, r.value) for r in recs)
            total = sum(seen.values())
            out[tier] = {"records": total, "duplicates": total - len(seen)}
    finally:
        await consumer.stop()
    return out


async def one_run(variant: str, records: int, args: argparse.Namespace) -> dict[str, Any]:
    s = settings.load()
    prefix = f"peer-{uuid.uuid4().hex[:6]}-{variant}."
    names = worker_topics(Naming(prefix), ("bus",), aggregates=False)
    await ensure_topics(s.kafka_bootstrap, 4, names)
    await preload(s.kafka_bootstrap, prefix + raw_topic("bus"), records)
    cmd = [sys.executable, str(VARIANTS_PY), variant, "--prefix", prefix, "--bootstrap", s.kafka_bootstrap]
    cmd += ["--redis", s.redis_url, "--seconds", "600", "--max-poll", str(args.max_poll)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result: dict[str, Any] = {"variant": variant}
        result.update(await measure_throughput(s.kafka_bootstrap, prefix, records, [proc]))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        result["tiers"] = await tier_output(s.kafka_bootstrap, prefix)
    finally:
        await delete_topics(s.kafka_bootstrap, names)
        await delete_redis_keys(s.redis_url, prefix)
        await asyncio.sleep(args.settle_seconds)
    return result


def equivalence(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Equal per-tier counts across every run of every variant, and no duplicates in any."""
    counts = {tuple(r["tiers"][t]["records"] for t in TIERS) for r in runs}
    duplicates = sum(r["tiers"][t]["duplicates"] for r in runs for t in TIERS)
    first = runs[0]["tiers"] if runs else {}
    return {
        "per_tier_records": {t: first[t]["records"] for t in TIERS} if first else {},
        "equal_counts": len(counts) == 1,
        "duplicates": duplicates,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for round_no in range(args.rounds):
        # the order rotates, so a trend in the machine's load favours neither
        order = VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            run = asyncio.run(one_run(variant, args.records, args))
            print(variant, run, flush=True)
            runs[variant].append(run)
    medians = {
        v: {k: median_of(rs, k) for k in ("records_per_s", "sustained_per_s", "cpu_us_per_record")}
        for v, rs in runs.items()
    }
    return {
        "records": args.records,
        "rounds": args.rounds,
        "runs": runs,
        "medians": medians,
        "equivalence": equivalence([r for rs in runs.values() for r in rs]),
    }
