"""Before/after: the stream pipeline's CPU per record at two git revisions, measured in one sitting.

A code change is judged by the CPU it costs per record, but one run of the pipeline benchmark moves by
±20 % with the machine's load. So each revision is checked out in a temporary worktree and its *own*
``bench/pipeline/run.py`` (pipeline and the plain loop, same run) is run in turn with the other's, for
several rounds. A round's figure is the pipeline's CPU per record over the plain loop's: both ran seconds
apart, so load that slows one slows the other. The verdict compares the medians with the spread of the
"before" rounds; the result is written to ``bench/results/`` as JSON with both revisions' SHAs.

Run (needs the stack; about a minute per revision and round):
    .venv/bin/python bench/pipeline/compare.py --before REV [--after HEAD] [--rounds 5]
The page ``docs/benchmarks-pipeline-compare.md`` is written from the result; ``--render RESULT.json`` writes
it again from a saved result without measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_ARGS = ["--variants", "pipeline,plain", "--workers", "2", "--latency-seconds", "2", "--settle-seconds", "2"]


def sha_of(rev: str) -> str:
    out = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def checkout(sha: str, into: Path) -> Path:
    tree = into / sha[:12]
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), sha], cwd=ROOT, check=True)
    return tree


def one_run(tree: Path, records: int) -> dict[str, Any]:
    """That revision's own benchmark, on that revision's code: its tree comes first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(tree / "bench/pipeline/run.py"), "--records", str(records), *BENCH_ARGS]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    by = {r["variant"]: r for r in map(json.loads, (ln for ln in out.stdout.splitlines() if ln.startswith("{")))}
    if out.returncode or set(by) != {"pipeline", "plain"}:
        # kept in the result, left out of the medians: a run that did not finish measured nothing
        return {"load_1min": round(load, 2), "failed": out.stderr[-2000:]}
    pipe, plain = by["pipeline"], by["plain"]
    return {
        "load_1min": round(load, 2),
        "pipeline_cpu_us_per_record": pipe["cpu_us_per_record"],
        "plain_cpu_us_per_record": plain["cpu_us_per_record"],
        "pipeline_over_plain": round(pipe["cpu_us_per_record"] / plain["cpu_us_per_record"], 3),
        "pipeline_sustained_per_s": pipe["sustained_per_s"],
        "tier_records": [pipe["tier_records"], plain["tier_records"]],
    }


def summary(all_runs: list[dict[str, Any]]) -> dict[str, Any]:
    runs = [r for r in all_runs if "failed" not in r]
    ratios = [r["pipeline_over_plain"] for r in runs]
    cpu = [r["pipeline_cpu_us_per_record"] for r in runs]
    return {
        "pipeline_over_plain_median": round(statistics.median(ratios), 3),
        "pipeline_over_plain_range": [min(ratios), max(ratios)],
        "pipeline_cpu_us_per_record_median": round(statistics.median(cpu), 1),
        "pipeline_cpu_us_per_record_range": [min(cpu), max(cpu)],
        "failed_runs": len(all_runs) - len(runs),
    }


def verdict(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Unchanged when the after median lies inside the before rounds' spread; otherwise which way it moved."""
    low, high = before["pipeline_over_plain_range"]
    median = after["pipeline_over_plain_median"]
    if low <= median <= high:
        return "unchanged within noise"
    return "slower" if median > high else "faster"


PAGE = ROOT / "docs/benchmarks-pipeline-compare.md"


def render(result: dict[str, Any]) -> str:
    """The generated page: every round as measured, then the medians and the verdict."""
    sha = result["git_sha"]
    lines = [
        "# Pipeline CPU per record, before and after a change",
        "",
        "Written by `bench/pipeline/compare.py` (do not edit by hand). Each revision ran its own",
        f"`bench/pipeline/run.py` ({result['records']:,} records, `{' '.join(result['bench_args'])}`), the two",
        "revisions alternating, on the same machine in one sitting. The figure that decides is the pipeline's",
        "CPU per record over the plain loop's from the same run, so machine load cancels out.",
        "",
        f"- before: `{sha['before'][:12]}`; after: `{sha['after'][:12]}`; measured {result['when']}",
        f"- verdict: **{result['verdict']}**",
        "",
        "| revision | round | 1-min load | pipeline µs/record | plain µs/record | pipeline / plain |",
        "|---|---|---|---|---|---|",
    ]
    for which in ("before", "after"):
        for i, run in enumerate(result["runs"][which], 1):
            if "failed" in run:
                lines.append(f"| {which} | {i} | {run['load_1min']} | did not finish | | |")
                continue
            lines.append(
                f"| {which} | {i} | {run['load_1min']} | {run['pipeline_cpu_us_per_record']} | "
                f"{run['plain_cpu_us_per_record']} | {run['pipeline_over_plain']} |"
            )
    lines += ["", "| revision | median pipeline / plain (range) | median pipeline µs/record (range) |", "|---|---|---|"]
    for which, s in result["summary"].items():
        lo, hi = s["pipeline_over_plain_range"]
        clo, chi = s["pipeline_cpu_us_per_record_range"]
        lines.append(
            f"| {which} | {s['pipeline_over_plain_median']} ({lo}–{hi}) | "
            f"{s['pipeline_cpu_us_per_record_median']} ({clo}–{chi}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--render", type=Path, help="write the page from this saved result; measure nothing")
    args = parser.parse_args()
    if args.render:
        PAGE.write_text(render(json.loads(args.render.read_text())))
        return
    if not args.before:
        parser.error("--before is needed to measure")
    shas = {"before": sha_of(args.before), "after": sha_of(args.after)}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="shfeeds-compare-") as tmp:
        trees = {which: checkout(sha, Path(tmp)) for which, sha in shas.items()}
        try:
            for round_no in range(args.rounds):
                # alternate which goes first, so a trend in the machine's load favours neither
                order = ("before", "after") if round_no % 2 == 0 else ("after", "before")
                for which in order:
                    run = one_run(trees[which], args.records)
                    runs[which].append(run)
                    print(which, shas[which][:7], json.dumps(run), flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    result = {
        "bench": "pipeline_compare",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_sha": shas,
        "records": args.records,
        "bench_args": BENCH_ARGS,
        "runs": runs,
        "summary": {which: summary(r) for which, r in runs.items()},
    }
    result["verdict"] = verdict(result["summary"]["before"], result["summary"]["after"])
    out = ROOT / "bench/results" / f"pipeline-compare-{shas['before'][:7]}-{shas['after'][:7]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    PAGE.write_text(render(result))
    print(json.dumps(result["summary"]), "\n", result["verdict"], "->", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
