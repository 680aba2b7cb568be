"""Where a variant's CPU per record goes: the fair bench's load, sampled with py-spy, split by stage and step.

One run per variant, as in bench/pipeline/fair.py (fresh prefix, a backlog with old event times, one worker
process): once the first tier record appears, py-spy attaches to the worker and samples it until the
backlog is through, so start-up (geometry, policy, group joins) is left out. Every sample's stack is put in
one step (decode, policy kernel, produce, Redis, ...) by its innermost frame that a rule below names, and
in one stage by the stage code on it (clean, delay, or the Kafka client's own background tasks). Each
step's share of the samples times the run's measured CPU per record gives µs per record.

A caveat the figures carry: py-spy counts a thread that is runnable but waiting for a core as busy, and on
a loaded machine a worker is preempted most often right after a socket write wakes the broker or Redis,
so "event loop" (socket writes, select) reads high under load. The kernel's real share is bounded by the
run's system CPU, printed next to the split.

Run (needs the stack and py-spy in the venv): .venv/bin/python -m bench.pipeline.cpu_split
    [--variants pipeline,plain-overlap] [--records 100000] [--rate 200]
Writes bench/results/pipeline-cpu-split-*.json and prints the table; publishes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import settings
from bench.pipeline.fair import prepared
from bench.pipeline.run import delete_redis_keys, measure_throughput, stop_workers
from bench.py_spy import classify, stacks, start_spy, stop_spy
from bench.report import machine, stamp, write_result
from kafka_admin import delete_topics
from schemas import TIERS, Naming

# (step, what a frame's "function (file:line)" text contains), checked from the innermost frame outwards;
# the first frame a rule names decides. Order matters only between rules that can name the same frame.
STEP_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("redis state", ("state_store.py", "redis/")),
    ("commit", ("commit (aiokafka", "_do_commit_offsets", "commit_offsets")),
    ("metrics/ops stats", ("prometheus_client", "streams/io/metrics.py", "stage_stats.py")),
    ("logging", ("logging/",)),
    ("envelope pack/unpack", ("envelope.py",)),
    ("decode raw", ("decode_kafka", "to_dict (", "schemas/")),
    ("clean/dedupe", ("cleaning.py",)),
    ("enrich", ("enrichment.py", "geo/")),
    ("policy kernel + encode", ("streams/policy/", "fanout.py")),
    ("produce (batch build, send)", ("batch_producer.py", "aiokafka/producer/", "aiokafka/record/_crecords")),
    ("fetch/consume", ("aiokafka/consumer/", "aiokafka/record/")),
    ("kafka client (conn, protocol)", ("aiokafka/",)),
    ("delay stage bookkeeping", ("stages/delay.py", "logic/windows.py")),
    ("clean stage bookkeeping", ("stages/clean.py", "stages/outputs.py")),
    ("stage loop", ("streams/io/stage.py",)),
    ("plain loop", ("run_plain",)),
    ("event loop", ("asyncio/", "selectors.py")),
]
STAGE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("delay", ("stages/delay.py",)),
    ("clean", ("stages/clean.py", "stages/outputs.py")),
    ("plain loop", ("run_plain",)),
]


def split(raw: str) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """(samples per step, per stage, per leaf function, total) from py-spy's raw (collapsed) output."""
    steps: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for frames, n in stacks(raw):
        steps[classify(frames, STEP_RULES, "other")] += n
        stages[classify(frames, STAGE_RULES, "shared: stage loop, fetch, Kafka client, event loop")] += n
        leaves[frames[-1] if frames else "(native)"] += n
        total += n
    return steps, stages, leaves, total


def per_record(counts: Counter[str], total: int, cpu_us: float) -> dict[str, float]:
    return {k: round(cpu_us * n / total, 2) for k, n in counts.most_common()} if total else {}


async def profiled_run(
    variant: str, records: int, rate: int, max_poll: int, keep: Path | None = None
) -> dict[str, Any]:
    s = settings.load()
    prefix, names, cmd = await prepared(variant, records, "split", max_poll)
    worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    out = Path(tempfile.mkdtemp(prefix="shfeeds-cpu-split-")) / "stacks.txt"
    spy: subprocess.Popen[bytes] | None = None

    async def attach_on_first_output() -> subprocess.Popen[bytes]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from access.identity import kafka_options
        from bench.pipeline.run import tier_total

        probe = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, **kafka_options())
        await probe.start()
        tps = [TopicPartition(Naming(prefix).tier_topic(t, "bus"), p) for t in TIERS for p in range(4)]
        try:
            while await tier_total(probe, tps) == 0:
                await asyncio.sleep(0.05)
        finally:
            await probe.stop()
        return start_spy(worker.pid, out, rate)

    try:
        attaching = asyncio.create_task(attach_on_first_output())
        result = await measure_throughput(s.kafka_bootstrap, prefix, records, [worker])
        spy = await attaching
        # user and system CPU of the whole run (start-up included): system time is the kernel's share,
        # mostly socket writes to Kafka and Redis, which py-spy sees only as the Python line that made them
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        result["worker_user_s"] = int(fields[11]) / os.sysconf("SC_CLK_TCK")
        result["worker_system_s"] = int(fields[12]) / os.sysconf("SC_CLK_TCK")
    finally:
        if spy is not None:
            stop_spy(spy)
        stop_workers([worker])
        await delete_topics(s.kafka_bootstrap, names)
        await delete_redis_keys(s.redis_url, prefix)
    raw = out.read_text() if out.exists() else ""
    if keep is not None:
        keep.write_text(raw)
    shutil.rmtree(out.parent, ignore_errors=True)
    steps, stages, leaves, total = split(raw)
    cpu = result["cpu_us_per_record"]
    result.update(
        variant=variant,
        samples=total,
        us_per_record_by_step=per_record(steps, total, cpu),
        us_per_record_by_stage=per_record(stages, total, cpu),
        top_leaf_functions=per_record(Counter(dict(leaves.most_common(25))), total, cpu),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="pipeline,plain-overlap")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--max-poll", type=int, default=2000)
    parser.add_argument("--keep-stacks", type=Path, help="also write each variant's raw py-spy stacks here")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "pipeline-cpu-split", **stamp(), "machine": machine(), "runs": []}
    for variant in args.variants.split(","):
        keep = args.keep_stacks / f"{variant}.txt" if args.keep_stacks else None
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
        run = asyncio.run(profiled_run(variant, args.records, args.rate, args.max_poll, keep))
        result["runs"].append(run)
        print(f"\n{variant}: {run['cpu_us_per_record']} µs CPU/record (with py-spy attached), {run['samples']} samples")
        print(f"  whole run: {run['worker_user_s']:.2f} s user, {run['worker_system_s']:.2f} s system CPU")
        for title in ("us_per_record_by_stage", "us_per_record_by_step", "top_leaf_functions"):
            print(f"  {title}:")
            for name, us in run[title].items():
                print(f"    {us:7.2f}  {name}")
    print(f"-> {write_result(result).name}")


if __name__ == "__main__":
    main()
