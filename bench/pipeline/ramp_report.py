"""The rate ramp's pure parts: a step's verdict, the knee, the goal, and the generated sections of
docs/benchmarks-pipeline.md and docs/benchmarks.md (from a result dict of bench/pipeline/ramp.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.report import ROOT, Goal

PAGE = ROOT / "docs/benchmarks-pipeline.md"
SUMMARY = ROOT / "docs/benchmarks.md"
P99_LIMIT_MS = 500
HOLD_SHARE = 0.8  # the goal's load: 80 % of the measured capacity
LAG_SLOPE_SHARE = 0.05  # lag grows when it rises faster than 5 % of the offered rate …
LAG_FLOOR_S = 1.0  # … and ends the step more than one second of input behind


def percentiles(latencies_ms: list[float] | np.ndarray) -> dict[str, float | None]:
    if len(latencies_ms) == 0:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(latencies_ms, dtype=float)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "max_ms": round(float(arr.max()), 1),
    }


def lag_slope(samples: list[tuple[float, int]]) -> float:
    """Records/s by which the consumer lag rose over the samples (least squares; 0 with fewer than 3)."""
    if len(samples) < 3:
        return 0.0
    t = np.array([s[0] for s in samples], dtype=float)
    lag = np.array([s[1] for s in samples], dtype=float)
    if np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t - t[0], lag, 1)[0])


def lag_growing(samples: list[tuple[float, int]], rate: float) -> bool:
    """The consumer falls behind: its lag climbs by more than a small share of the offered rate and ends the
    step more than ``LAG_FLOOR_S`` of input behind (one batch in flight is not falling behind)."""
    if not samples:
        return False
    return lag_slope(samples) > LAG_SLOPE_SHARE * rate and samples[-1][1] > LAG_FLOOR_S * rate


def step_ok(step: dict[str, Any]) -> bool:
    """A step passes when every record sent in it reached the operator tier (which gets them all), every
    tier's p99 (delayed tiers against their due time) is within the limit and the lag does not grow. A
    throttled tier may have nothing to judge in a short step (public: one update per vehicle per 30 s)."""
    complete = step["tiers"]["operator"]["received"] >= step["sent"] > 0
    p99s = [t["p99_ms"] for t in step["tiers"].values() if t["received"]]
    return complete and max(p99s) <= P99_LIMIT_MS and not step["lag_growing"]


def knee(steps: list[dict[str, Any]]) -> float | None:
    """The highest offered rate at which this and every lower step passed; None when the first failed. A
    rate offered twice (a failing step is retried once) counts by its last attempt."""
    last = {step["rate"]: step for step in steps}  # steps in the order offered
    best = None
    for rate in sorted(last):
        if not step_ok(last[rate]):
            break
        best = rate
    return best


def worst_p99(step: dict[str, Any]) -> float | None:
    p99s = [t["p99_ms"] for t in step["tiers"].values() if t["p99_ms"] is not None]
    return max(p99s) if p99s else None


def goals(result: dict[str, Any]) -> list[Goal]:
    out = []
    for run in result["runs"]:
        hold = run.get("hold")
        if run.get("knee") is None or hold is None:
            out.append(Goal(f"p99 at {HOLD_SHARE:.0%} of capacity, {run['workers']} worker(s)",
                            f"≤ {P99_LIMIT_MS} ms, delayed tiers included", "no capacity found", False))  # fmt: skip
            continue
        p99 = worst_p99(hold)
        out.append(
            Goal(
                f"p99 at {HOLD_SHARE:.0%} of capacity, {run['workers']} worker(s)",
                f"≤ {P99_LIMIT_MS} ms, delayed tiers included",
                f"worst tier p99 {p99:,.0f} ms at {hold['offered_per_s']:,.0f} records/s "
                f"(capacity {run['knee']:,.0f}/s){', lag growing' if hold['lag_growing'] else ''}",
                step_ok(hold),
            )
        )
    return out


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _load(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _step_row(label: str, step: dict[str, Any]) -> str:
    tiers = " | ".join(f"{_ms(t['p50_ms'])} / {_ms(t['p99_ms'])}" for t in step["tiers"].values())
    return (
        f"| {label} | {step['offered_per_s']:,.0f} | {tiers} | {step['lag_end']:,} | "
        f"{step['lag_slope_per_s']:+,.0f} | {_load(step.get('load_1min'))} | {'pass' if step_ok(step) else 'fail'} |"
    )


def page_body(result: dict[str, Any], source: str) -> str:
    tiers = result["tiers"]
    head = " | ".join(f"{t} p50 / p99 ms" for t in tiers)
    lines = [
        f"Measured {result['when']} at `{result['git_sha'][:12]}`, load {result['machine']['loadavg']} before and "
        f"{result['machine_after']['loadavg']} after, on {result['machine']['cores']} cores; steps of "
        f"{result['step_seconds']:.0f} s, the hold {result['hold_seconds']:.0f} s; result file `{source}`.",
    ]
    for run in result["runs"]:
        lines += [
            "",
            f"**{run['workers']} worker process(es)**: capacity (knee) "
            f"{_ms(run['knee'])} records/s; driver CPU {run['driver_cpu_cores']:.2f} cores, workers "
            f"{run['worker_cpu_cores']:.2f} cores over the run.",
            "",
            f"| step | offered records/s | {head} | lag at end | lag slope /s | 1-min load | verdict |",
            "|---|---|" + "---|" * len(tiers) + "---|---|---|---|",
        ]
        for step in run["steps"]:
            lines.append(_step_row(f"{step['rate']:,}", step))
        if run.get("hold"):
            lines.append(_step_row(f"**hold {HOLD_SHARE:.0%}**", run["hold"]))
    lines += ["", "Goals:", "", "\n".join(f"- {g.line()}" for g in goals(result))]
    return "\n".join(lines)


def summary_body(result: dict[str, Any], source: str) -> str:
    return (
        f"Stream pipeline rate ramp, records produced in real time (docs/benchmarks-pipeline.md, `{source}`, "
        f"load {result['machine']['loadavg'][0]}):\n\n" + "\n".join(f"- {g.line()}" for g in goals(result))
    )
