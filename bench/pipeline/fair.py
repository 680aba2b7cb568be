"""Fair baselines in the same run: our stream worker against the same job written well in the other ways.

Variants (bench/pipeline/variants.py): ``pipeline`` (ours), ``plain-overlap`` (the aiokafka loop that
overlaps delivery with compute), ``faust-batched`` (Faust with ``stream.take`` and the same vectorised
code), ``quix`` (Quix Streams) and, as a secondary row, ``faust`` (naive per event). Every round gives each
variant a fresh topic prefix and a backlog, measures records/s and CPU per record
(bench/pipeline/run.py), then reads every tier topic back and holds it to the reference output
(bench/pipeline/outputs.py). The order rotates each round; figures are medians over the rounds.

``--ablation`` runs ours with and without its duties (the pending topics and delay stages, the Redis writes)
next to the overlapping plain loop instead, to measure what each duty costs.

Run (needs the stack): .venv/bin/python -m bench.pipeline.fair [--rounds 3] [--workers 1]
    [--variants pipeline,plain-overlap,faust-batched,quix,faust] [--backlog pipeline=100000,...] [--ablation]
Writes bench/results/pipeline-fair-*.json and the generated sections of docs/benchmarks-pipeline.md and
docs/benchmarks.md (the ablation: its own section of the first); ``--render RESULT.json`` writes them again
from a saved result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import settings
from bench.pipeline.fair_report import (
    PAGE,
    SUMMARY,
    ablation_body,
    goals,
    page_body,
    rebalance_body,
    summary_body,
)
from bench.pipeline.outputs import check_run, equivalence, reference_counts, tier_output
from bench.pipeline.run import delete_redis_keys, measure_throughput, preload, stop_workers, throughput_medians
from bench.pipeline.variants import ABLATIONS
from bench.report import conclude, machine, publish_section, stamp
from kafka_admin import delete_topics, ensure_topics
from schemas import Naming, raw_topic
from streams.stages.worker import worker_topics

VARIANTS_PY = Path(__file__).with_name("variants.py")
DEFAULT_VARIANTS = "pipeline,plain-overlap,faust-batched,quix,faust"
# Backlog per variant: enough for a few seconds of steady work at each one's speed on this machine.
DEFAULT_BACKLOG = {"pipeline": 100_000, "plain-overlap": 100_000, "plain": 100_000, "faust-batched": 30_000,
                   "quix": 6_000, "faust": 4_000, **{v: 100_000 for v in ABLATIONS}}  # fmt: skip
# What each of our duties costs: ours, ours without one or both, and the loop without any (``--ablation``).
ABLATION_VARIANTS = ",".join(["pipeline", *ABLATIONS, "plain-overlap"])
QUICK = "pipeline=30000,plain-overlap=30000,plain=30000,faust-batched=10000,quix=2000,faust=1000"


async def prepared(variant: str, records: int, tag: str, max_poll: int) -> tuple[str, list[str], list[str]]:
    """A fresh prefix with its topics and a backlog of ``records`` raw bus records: (prefix, its topics, the
    command that runs ``variant`` on it)."""
    s = settings.load()
    prefix = f"{tag}-{uuid.uuid4().hex[:6]}-{variant}."
    names = worker_topics(Naming(prefix), ("bus",), aggregates=False)
    await ensure_topics(s.kafka_bootstrap, 4, names)
    await preload(s.kafka_bootstrap, prefix + raw_topic("bus"), records)
    cmd = [sys.executable, str(VARIANTS_PY), variant, "--prefix", prefix, "--bootstrap", s.kafka_bootstrap]
    cmd += ["--redis", s.redis_url, "--seconds", "600", "--max-poll", str(max_poll)]
    return prefix, names, cmd


async def one_run(variant: str, records: int, args: argparse.Namespace, tag: str = "fair") -> dict[str, Any]:
    """One variant on a fresh prefix: throughput and CPU from a backlog of ``records``, then its tier output."""
    s = settings.load()
    prefix, names, cmd = await prepared(variant, records, tag, args.max_poll)
    workers, stagger = getattr(args, "workers", 1), getattr(args, "stagger_seconds", 0.0)

    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below) the workers' stderr

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)

    async def join_later() -> None:
        # a worker joining while the others are busy: the group rebalances mid-backlog
        for _ in range(workers - 1):
            await asyncio.sleep(stagger)
            procs.append(spawn())

    procs = [spawn() for _ in range(1 if stagger else workers)]
    joining = asyncio.create_task(join_later()) if stagger else None
    result: dict[str, Any] = {"variant": variant, "workers": workers, "stagger_seconds": stagger}
    try:
        result.update(await measure_throughput(s.kafka_bootstrap, prefix, records, procs))
    except RuntimeError as exc:
        errors.seek(0)
        raise RuntimeError(f"{exc}: {errors.read()[-1500:].decode(errors='replace')}") from exc
    finally:
        if joining is not None:
            await joining
        stop_workers(procs)
        errors.close()
    try:
        result["tiers"] = await tier_output(s.kafka_bootstrap, prefix)
    finally:
        await delete_topics(s.kafka_bootstrap, names)
        await delete_redis_keys(s.redis_url, prefix)
        await asyncio.sleep(args.settle_seconds)
    return result


def parse_backlog(text: str) -> dict[str, int]:
    """``pipeline=100000,quix=6000`` over the defaults."""
    out = dict(DEFAULT_BACKLOG)
    for item in filter(None, text.split(",")):
        name, _, n = item.partition("=")
        if not n.isdigit():
            raise SystemExit(f"--backlog: expected variant=records, got {item!r}")
        out[name.strip()] = int(n)
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    variants = args.variants.split(",")
    backlogs = parse_backlog(args.backlog)
    expected = {n: reference_counts(n) for n in {backlogs[v] for v in variants}}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for round_no in range(args.rounds):
        # the order rotates each round, so a trend in the machine's load favours no variant
        shift = round_no % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            n = backlogs[variant]
            try:
                run = asyncio.run(one_run(variant, n, args))
            except RuntimeError as exc:  # a variant that stalls is reported, not fatal to the others
                run = {"variant": variant, "failed": str(exc)}
            run.update(records=n, expected=expected[n], machine=machine())
            if "tiers" in run:
                run["check"] = check_run(run["tiers"], expected[n])
            print(variant, json.dumps({k: v for k, v in run.items() if k != "expected"}), flush=True)
            runs[variant].append(run)
    medians = throughput_medians(runs)
    return {
        "ablation": args.ablation,
        "rounds": args.rounds,
        "workers": args.workers,
        "stagger_seconds": args.stagger_seconds,
        "backlogs": {v: backlogs[v] for v in variants},
        "runs": runs,
        "medians": medians,
        "equivalence": equivalence([r for rs in runs.values() for r in rs if "tiers" in r]),
    }


def publish(result: dict[str, Any], path: Path) -> None:
    if result.get("stagger_seconds"):  # the rebalance demonstration, not the comparison
        publish_section(PAGE, "bench:pipeline-rebalance", rebalance_body(result, path.name))
        return
    if result.get("ablation"):  # what our duties cost, not the comparison with the baselines
        publish_section(PAGE, "bench:pipeline-ablation", ablation_body(result, path.name))
        return
    publish_section(PAGE, "bench:pipeline-fair", page_body(result, path.name))
    publish_section(SUMMARY, "bench:pipeline-fair-summary", summary_body(result, path.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per variant")
    parser.add_argument("--stagger-seconds", type=float, default=0.0, help="start the workers this far apart")
    parser.add_argument("--backlog", default="", help="variant=records,... over the defaults")
    parser.add_argument("--max-poll", type=int, default=2000)
    parser.add_argument("--settle-seconds", type=float, default=2.0)
    parser.add_argument("--render", type=Path, help="publish this saved result; measure nothing")
    parser.add_argument("--no-publish", action="store_true", help="write the result JSON only")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help=f"what each of our duties costs: the variants {ABLATION_VARIANTS} (a section of its own)",
    )
    parser.add_argument("--quick", action="store_true", help=f"one round on small backlogs ({QUICK}), not published")
    args = parser.parse_args()
    if args.ablation:
        args.variants = ABLATION_VARIANTS
    if args.quick:
        args.rounds, args.backlog, args.no_publish = 1, QUICK, True
    if args.render:
        publish(json.loads(args.render.read_text()), args.render)
        return
    result: dict[str, Any] = {"bench": "pipeline-fair", **stamp(), "machine": machine()}
    result.update(measure(args))
    conclude(result, None if args.no_publish else publish, goals)


if __name__ == "__main__":
    main()
