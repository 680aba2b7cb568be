"""The benchmark sets ``make bench`` and ``make bench-full`` run, one step after another, each step timed.

    .venv/bin/python -m bench.suite [--full]

The default set is the one that fits in 30 minutes on the two-core machine (a goal checked here, from the
steps' measured durations): the policy kernel, both peers, the pipeline's fair baselines, the fan-out's
capacity, then the capacity model. ``--full`` adds the pipeline's rate ramp with one and two workers, the
end-to-end latency and the adapters' whole-city poll → Kafka. Each step writes its own result and doc
sections; this writes the steps' durations and exit codes (bench/results/bench-suite-….json) and, for the
default set, their table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import ROOT, Goal, conclude, machine, publish_section, stamp

BUDGET_S = 30 * 60  # the default set's bound

PEERS = ["bench.peers", "--records", "20000", "--rounds", "3"]
DEFAULT: list[list[str]] = [
    ["bench.policy_engine"],
    [*PEERS, "--ramp-rounds", "1"],  # one capacity ramp per side: three do not fit in the 30 minutes
    ["bench.pipeline.fair"],
    ["bench.fanout.capacity", "--seconds", "10"],
    ["bench.capacity"],
]
FULL: list[list[str]] = [
    DEFAULT[0],
    [*PEERS, "--ramp-rounds", "3"],
    DEFAULT[2],
    ["bench.pipeline.ramp", "--workers", "1,2"],
    ["bench.e2e_latency"],
    ["bench.adapters_e2e"],
    *DEFAULT[3:],
]


def run_steps(steps: list[list[str]]) -> list[dict[str, Any]]:
    out = []
    for step in steps:
        print("==", " ".join(step), flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", *step], cwd=ROOT, check=False).returncode
        out.append({"step": " ".join(step), "seconds": round(time.monotonic() - started, 1), "exit_code": code})
    return out


def goals(result: dict[str, Any]) -> list[Goal]:
    total = sum(s["seconds"] for s in result["steps"])
    failed = [s["step"] for s in result["steps"] if s["exit_code"] != 0]
    out = [
        Goal(
            "every step ran to its end",
            "exit code 0",
            ", ".join(failed) + " failed" if failed else "all did",
            not failed,
        )
    ]
    if not result["full"]:
        out.append(Goal("the default set's duration", f"≤ {BUDGET_S // 60} minutes", f"{total / 60:.1f} minutes",
                        total <= BUDGET_S))  # fmt: skip
    return out


def publish(result: dict[str, Any], path: Path) -> None:
    if result["full"]:  # the table is the default set's: what `make bench` costs
        return
    lines = [
        f"`make bench` (`{path.name}`, commit {result['git_sha'][:12]}, {result['when']}):",
        "",
        "| step | minutes | exit code |",
        "|---|---|---|",
        *[f"| `python -m {s['step']}` | {s['seconds'] / 60:.1f} | {s['exit_code']} |" for s in result["steps"]],
        "",
        *[f"- {goal.line()}" for goal in goals(result)],
    ]
    publish_section(ROOT / "docs/benchmarks.md", "bench:suite", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every benchmark, every ramp point (over an hour)")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "bench-suite", **stamp(), "machine": machine(), "full": args.full}
    result["steps"] = run_steps(FULL if args.full else DEFAULT)
    conclude(result, publish, goals)
    sys.exit(0 if all(g.met for g in goals(result)) else 1)


if __name__ == "__main__":
    main()
