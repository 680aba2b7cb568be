"""The fair-baseline goals, checked in code, and the generated sections of docs/benchmarks-pipeline.md and
docs/benchmarks.md. Pure functions of a result dict (bench/pipeline/fair.py), so a saved result renders the
same way again."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.report import ROOT, Goal

PAGE = ROOT / "docs/benchmarks-pipeline.md"
SUMMARY = ROOT / "docs/benchmarks.md"
QUIX_MIN_RATIO = 1.5  # our sustained records/s over Quix Streams'
FAUST_BATCHED_MIN_RATIO = 3.0  # over Faust with stream.take and the same vectorised code
CPU_MAX_RATIO = 1.3  # our CPU per record over the overlapping plain loop's

LABELS = {
    "pipeline": "ours (stream worker)",
    "plain-overlap": "plain aiokafka loop, delivery overlapped with compute",
    "plain": "plain aiokafka loop, one batch at a time",
    "faust-batched": "Faust, `stream.take` + the same vectorised code",
    "quix": "Quix Streams",
    "faust": "Faust, naive per event (secondary)",
    "pipeline-undelayed": "ours, every tier released at once (no pending topics, no delay stages)",
    "pipeline-no-state": "ours, no Redis writes",
    "pipeline-bare": "ours, neither",
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _fmt(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def goals(result: dict[str, Any]) -> list[Goal]:
    med = result["medians"]
    ours = med.get("pipeline", {})
    out: list[Goal] = []
    for peer, target in (("quix", QUIX_MIN_RATIO), ("faust-batched", FAUST_BATCHED_MIN_RATIO)):
        if peer not in med:
            continue
        r = _ratio(ours.get("sustained_per_s"), med[peer]["sustained_per_s"])
        out.append(
            Goal(
                f"pipeline vs {LABELS[peer]}, sustained records/s",
                f"≥ {target}×",
                f"{_fmt(r, '{:.1f}×')} ({_fmt(ours.get('sustained_per_s'))} vs "
                f"{_fmt(med[peer]['sustained_per_s'])} records/s)",
                r is not None and r >= target,
            )
        )
    if "plain-overlap" in med:
        # Judged round by round: the machine's speed drifts between rounds by more than the gap measured, and
        # the two runs of a round are minutes apart. Without such pairs, on the medians.
        paired = round_ratios(result)
        r = statistics.median(paired) if paired else _ratio(ours.get("cpu_us_per_record"),
                                                            med["plain-overlap"]["cpu_us_per_record"])  # fmt: skip
        how = f"median of the rounds' {', '.join(f'{x:.2f}×' for x in paired)}; " if paired else ""
        out.append(
            Goal(
                "pipeline CPU per record vs the overlapping plain loop",
                f"≤ {CPU_MAX_RATIO}×",
                f"{_fmt(r, '{:.2f}×')} ({how}medians {_fmt(ours.get('cpu_us_per_record'), '{:.1f}')} vs "
                f"{_fmt(med['plain-overlap']['cpu_us_per_record'], '{:.1f}')} µs)",
                r is not None and r <= CPU_MAX_RATIO,
            )
        )
    eq = result["equivalence"]
    ok = eq["equal_counts"] and eq["duplicates"] == 0 and not eq["off_reference"]
    off = ", ".join(eq["off_reference"]) or "none"
    out.append(
        Goal(
            "same output from every variant",
            "per-tier counts = the reference's, no duplicates",
            f"counts {'equal' if eq['equal_counts'] else 'DIFFER'}, {eq['duplicates']} duplicates, "
            f"off the reference: {off}",
            ok,
        )
    )
    return out


def _check_cell(run: dict[str, Any]) -> str:
    if "failed" in run:
        return "did not finish"
    check = run.get("check")
    if check is None:
        return "–"
    if check["equivalent"]:
        return "right"
    extra = ", ".join(f"{t} {d:+,}" for t, d in check["missing_or_extra"].items() if d)
    dups = ", ".join(f"{t} {d:,}" for t, d in check["duplicates"].items() if d)
    return "; ".join(filter(None, [extra and f"records vs reference: {extra}", dups and f"duplicates: {dups}"]))


def page_body(result: dict[str, Any], source: str) -> str:
    med = result["medians"]
    lines = [
        f"Measured {result['when']} at `{result['git_sha'][:12]}`, load {result['machine']['loadavg']} before and "
        f"{result['machine_after']['loadavg']} after, on {result['machine']['cores']} cores; "
        f"{result['workers']} worker process(es) per variant, {result['rounds']} rounds in rotating order, "
        f"medians; result file `{source}`.",
        "",
        "| variant | backlog | records/s | sustained records/s | CPU µs/record | sustained / ours |",
        "|---|---|---|---|---|---|",
    ]
    ours = med.get("pipeline", {}).get("sustained_per_s")
    for v, m in med.items():
        rel = _ratio(m["sustained_per_s"], ours)
        lines.append(
            f"| {LABELS.get(v, v)} | {result['backlogs'][v]:,} | {_fmt(m['records_per_s'])} | "
            f"{_fmt(m['sustained_per_s'])} | {_fmt(m['cpu_us_per_record'], '{:.1f}')} | {_fmt(rel, '{:.2f}')} |"
        )
    lines += _every_run(result, "sustained records/s, CPU µs/record", lambda r: f"{_fmt(r.get('sustained_per_s'))}, ")
    paired = round_ratios(result)
    if paired:
        lines += [
            "",
            "Our CPU per record over the overlapping loop's, round by round (the two runs of a round minutes apart, "
            f"so on a machine in much the same state): {', '.join(f'{r:.2f}×' for r in paired)}. The goal is "
            "judged on their median: the medians above can pair a fast moment of one with a slow one of the other.",
        ]
    eq = result["equivalence"]
    per_tier = ", ".join(f"{t} {n:,}" for t, n in eq["per_tier_records"].items())
    lines += ["", f"Tier records of the first run ({per_tier}); every run is held to the reference for its backlog.",
              "", "Goals:", "", goal_lines(goals(result))]  # fmt: skip
    return "\n".join(lines)


def _every_run(result: dict[str, Any], figures: str, first: Callable[[dict[str, Any]], str]) -> list[str]:
    """A line per variant with each of its runs: ``first`` (the figure before the CPU, if any), the CPU per
    record, the 1-minute load and the output check."""
    lines = ["", f"Every run ({figures}, 1-minute load, output check):", ""]
    for v, runs in result["runs"].items():
        each = "; ".join(
            f"{first(r)}{_fmt(r.get('cpu_us_per_record'), '{:.1f}')}, {r['machine']['loadavg'][0]}, {_check_cell(r)}"
            for r in runs
        )
        lines.append(f"- {LABELS.get(v, v)}: {each}")
    return lines


def round_ratios(result: dict[str, Any]) -> list[float]:
    """Our CPU per record over the overlapping loop's in each round where both finished: how far the ratio
    moves with the machine, which the medians do not show."""
    ours, loop = result["runs"].get("pipeline", []), result["runs"].get("plain-overlap", [])
    pairs = zip(ours, loop, strict=False)
    return [r for a, b in pairs if (r := _ratio(a.get("cpu_us_per_record"), b.get("cpu_us_per_record"))) is not None]


def goal_lines(gs: list[Goal]) -> str:
    return "\n".join(f"- {g.line()}" for g in gs)


def summary_body(result: dict[str, Any], source: str) -> str:
    return (
        f"Stream pipeline against fair baselines, same job, same run (docs/benchmarks-pipeline.md, `{source}`, "
        f"load {result['machine']['loadavg'][0]}):\n\n{goal_lines(goals(result))}"
    )


def ablation_body(result: dict[str, Any], source: str) -> str:
    """What each duty of ours costs (``--ablation``): CPU per record with and without it, against the loop."""
    med = result["medians"]
    loop = med.get("plain-overlap", {}).get("cpu_us_per_record")
    ours = med.get("pipeline", {}).get("cpu_us_per_record")
    lines = [
        f"Measured {result['when']} at `{result['git_sha'][:12]}`, load {result['machine']['loadavg']} before and "
        f"{result['machine_after']['loadavg']} after, on {result['machine']['cores']} cores; one worker process "
        f"per variant, {result['rounds']} rounds in rotating order, medians; result file `{source}`.",
        "",
        "| variant | CPU µs/record | vs the overlapping loop | less than ours |",
        "|---|---|---|---|",
    ]
    for v, m in med.items():
        cpu = m["cpu_us_per_record"]
        saved = ours - cpu if ours and cpu else None
        lines.append(
            f"| {LABELS.get(v, v)} | {_fmt(cpu, '{:.1f}')} | {_fmt(_ratio(cpu, loop), '{:.2f}×')} | "
            f"{'–' if v == 'pipeline' else _fmt(saved, '{:.1f} µs')} |"
        )
    lines += _every_run(result, "CPU µs/record", lambda r: "")
    lines += ["", "Goals (the same checks as the comparison above, on this run):", "", goal_lines(goals(result))]
    return "\n".join(lines)


def rebalance_body(result: dict[str, Any], source: str) -> str:
    """A run with workers joining mid-backlog (``--stagger-seconds``): what each variant wrote per tier
    against the reference, to show which designs keep their output through a rebalance."""
    tiers = list(next(iter(result["runs"].values()))[0]["expected"])
    lines = [
        f"Measured {result['when']} at `{result['git_sha'][:12]}`, load {result['machine']['loadavg']}; "
        f"{result['workers']} worker processes per variant, each started {result['stagger_seconds']:g} s after "
        f"the previous one; result file `{source}`.",
        "",
        "| variant | backlog | " + " | ".join(f"{t} (reference)" for t in tiers) + " | output check |",
        "|---|---|" + "---|" * len(tiers) + "---|",
    ]
    for v, runs in result["runs"].items():
        for r in runs:
            if "tiers" not in r:
                lines.append(f"| {LABELS.get(v, v)} | {r['records']:,} | " + "– | " * len(tiers) + "did not finish |")
                continue
            cells = " | ".join(f"{r['tiers'][t]['records']:,} ({r['expected'][t]:,})" for t in tiers)
            lines.append(f"| {LABELS.get(v, v)} | {r['records']:,} | {cells} | {_check_cell(r)} |")
    return "\n".join(lines)
