"""Stream processing peer: our stream worker and the same job in Quix Streams, alternated on the same input.

Each round gives every variant a fresh topic prefix with the same backlog of bus records (bench/pipeline/fair.py
makes and measures it; the variants are in bench/pipeline/variants.py), measures its records/s and CPU per
record, then reads back every tier topic: the per-tier output counts must be equal across variants and no
tier may hold the same (key, value) twice. The figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.pipeline.fair import one_run
from bench.pipeline.outputs import equivalence
from bench.pipeline.run import throughput_medians

VARIANTS = ("pipeline", "quix")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for round_no in range(args.rounds):
        # the order rotates, so a trend in the machine's load favours neither
        order = VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            run = asyncio.run(one_run(variant, args.records, args, tag="peer"))
            print(variant, run, flush=True)
            runs[variant].append(run)
    medians = throughput_medians(runs)
    return {
        "records": args.records,
        "rounds": args.rounds,
        "runs": runs,
        "medians": medians,
        "equivalence": equivalence([r for rs in runs.values() for r in rs]),
    }
