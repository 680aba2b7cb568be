"""The end-to-end latency bench's pure parts: joining the per-report stamps of each stage, exact
percentiles and an uncapped histogram, the goals, and the generated doc sections.

Every figure is computed from every report of the window, one latency per report: nothing is sampled,
clamped or dropped as an outlier. A report that never arrived is counted as missing at the first stage it
did not reach, never given a latency.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from bench.report import ROOT, Goal

PAGE = ROOT / "docs/benchmarks-e2e.md"
SUMMARY = ROOT / "docs/benchmarks.md"
# The bound on poll → client at p99, undelayed tier. The stages' own goals add up to it: the stream
# pipeline's p99 ≤ 500 ms (bench/pipeline/ramp.py) and the fan-out's ≤ 200 ms (bench/fanout/run.py), and
# ~300 ms left for the adapter to read and decode a whole-city body and have Kafka acknowledge it.
P99_BOUND_MS = 1_000
SLOW_MS = 1_000  # the share of reports slower than this is reported next to the percentiles
SLICE_MS = 10_000  # the window's time course, by serve time
FIRST_EDGE_MS = 25  # histogram buckets: [0, 25), [25, 50), [50, 100), … doubling until the maximum fits

Report = tuple[str, int]  # (bus id, observed_at ms): one position report
Stamps = Mapping[Report, int]  # report → the moment (epoch ms) a stage first had it

STAGES = (
    ("poll_to_client", "poll → client (end to end)"),
    ("poll_to_raw", "poll → raw.bus (adapter)"),
    ("raw_to_tier", "raw.bus → tier.operator.bus (stream worker)"),
    ("tier_to_client", "tier.operator.bus → client (WebSocket server)"),
)


def nearest_rank(ordered: list[int], q: float) -> int:
    """The ``q`` quantile of ascending ``ordered`` by the nearest-rank rule: a value some report had."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def histogram(values: list[int]) -> list[dict[str, int]]:
    """Counts in doubling buckets from 0 up to the first edge above the maximum: no open-ended last bucket.
    Values below 0 (a stage stamped before the one before it, by a few ms) get a bucket of their own."""
    if not values:
        return []
    top = max(values)
    edges = [0, FIRST_EDGE_MS]
    while edges[-1] <= top:
        edges.append(edges[-1] * 2)
    counts = [0] * (len(edges) - 1)
    below = 0
    for v in values:
        if v < 0:
            below += 1
        else:
            counts[bisect.bisect_right(edges, v) - 1] += 1  # the bucket [edges[i], edges[i + 1]) holding v
    out = [{"lo_ms": min(values), "hi_ms": 0, "count": below}] if below else []
    out += [{"lo_ms": edges[i], "hi_ms": edges[i + 1], "count": c} for i, c in enumerate(counts)]
    return out


def latency_summary(values: list[int]) -> dict[str, Any]:
    """Count, exact p50/p90/p99, min and max, the share over ``SLOW_MS`` and the histogram."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    slow = len(ordered) - bisect.bisect_right(ordered, SLOW_MS)
    return {
        "count": len(ordered),
        "min_ms": ordered[0],
        "p50_ms": nearest_rank(ordered, 0.50),
        "p90_ms": nearest_rank(ordered, 0.90),
        "p99_ms": nearest_rank(ordered, 0.99),
        "max_ms": ordered[-1],
        "over_slow": slow,
        "over_slow_share": round(slow / len(ordered), 5),
        "histogram": histogram(ordered),
    }


def join(served: Stamps, raw: Stamps, tier: Stamps, client: Stamps, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The window's reports (first served in ``[start_ms, end_ms)``): each stage's latencies, what went
    missing where, and the time course. Reports the client received from ``start_ms`` on that the source
    never served are counted apart: they would mean the ids or times were mapped wrongly."""
    window = {r: t for r, t in served.items() if start_ms <= t < end_ms}
    stage: dict[str, list[int]] = {name: [] for name, _ in STAGES}
    missing = {"served_not_raw": 0, "raw_not_tier": 0, "tier_not_client": 0}
    slices: dict[int, list[int]] = {}
    for report, t in window.items():
        r, k, c = raw.get(report), tier.get(report), client.get(report)
        if c is not None:
            stage["poll_to_client"].append(c - t)
            slices.setdefault((t - start_ms) // SLICE_MS, []).append(c - t)
        if r is None:
            missing["served_not_raw"] += 1
            continue
        stage["poll_to_raw"].append(r - t)
        if k is None:
            missing["raw_not_tier"] += 1
            continue
        stage["raw_to_tier"].append(k - r)
        if c is None:
            missing["tier_not_client"] += 1
        else:
            stage["tier_to_client"].append(c - k)
    return {
        "served": len(window),
        "stages": {name: latency_summary(values) for name, values in stage.items()},
        "missing": missing,
        "client_unserved": sum(1 for report, t in client.items() if t >= start_ms and report not in served),
        "slices": [
            {
                "from_s": n * SLICE_MS // 1000,
                "count": len(values),
                "p50_ms": nearest_rank(sorted(values), 0.5),
                "p99_ms": nearest_rank(sorted(values), 0.99),
                "max_ms": max(values),
            }
            for n, values in sorted(slices.items())
        ],
    }


def goals(result: dict[str, Any]) -> list[Goal]:
    out = []
    for run in result["runs"]:
        e2e = run["stages"]["poll_to_client"]
        p99 = e2e.get("p99_ms")
        name = f"{run['interval_s']:g} s poll"
        out.append(
            Goal(
                f"poll → client p99, undelayed tier, {name}",
                f"≤ {P99_BOUND_MS:,} ms at {run['buses']:,} buses",
                f"{p99:,} ms (max {e2e['max_ms']:,}, {e2e['count']:,} reports)" if p99 is not None else "no reports",
                p99 is not None and p99 <= P99_BOUND_MS,
            )
        )
        lost = run["missing"]["tier_not_client"]
        out.append(
            Goal(
                f"nothing lost on the way to the client, {name}",
                f"every report of the window on the operator tier reached the client within {run['grace_s']:g} s",
                f"{lost:,} missing of {run['stages']['raw_to_tier'].get('count', 0):,}",
                lost == 0 and e2e.get("count", 0) > 0,
            )
        )
    return out


def _ms(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def stage_table(run: dict[str, Any]) -> list[str]:
    lines = [
        f"| stage | reports | p50 ms | p90 ms | p99 ms | max ms | > {SLOW_MS:,} ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in STAGES:
        s = run["stages"][name]
        if not s["count"]:
            lines.append(f"| {label} | 0 | – | – | – | – | – |")
            continue
        lines.append(
            f"| {label} | {s['count']:,} | {_ms(s['p50_ms'])} | {_ms(s['p90_ms'])} | {_ms(s['p99_ms'])} "
            f"| {_ms(s['max_ms'])} | {s['over_slow']:,} ({100 * s['over_slow_share']:.2f} %) |"
        )
    return lines


def histogram_line(summary: dict[str, Any]) -> str:
    buckets = summary.get("histogram") or []
    return ", ".join(f"[{b['lo_ms']:,}, {b['hi_ms']:,}) {b['count']:,}" for b in buckets if b["count"])


def adapter_line(run: dict[str, Any]) -> str:
    a = run.get("adapter") or {}
    if not a.get("polls"):
        return "The adapter's metrics were not read."
    timing = (
        f"fetch + parse + hand-over to the producer took a median {a['poll_ms_median']:,} ms, at most "
        f"{a['poll_ms_max']:,} ms ({a['poll_ms_seen']} polls seen)"
        if a.get("poll_ms_seen")
        else "no poll time seen"
    )
    return (
        f"The adapter over the window (its own metrics): {a['polls']} polls ({a['not_modified']} not modified), "
        f"{a['records']:,} records sent, {a['skipped']:,} unchanged skipped, {a['rejects']} rejected, "
        f"{a['errors']} failed; {timing}."
    )


def _fleet_at(run: dict[str, Any]) -> str:
    """Whose fleet the source served: the bench states a Beijing time of day (bench/e2e_latency/source.py)."""
    return f", the fleet of {run['fleet_at']} Beijing time" if run.get("fleet_at") else ""


def page_body(result: dict[str, Any], source: str) -> str:
    before = result["machine"]
    lines = [
        f"Commit `{result['git_sha'][:12]}`, {result['when']}, {before['cores']} cores, load average "
        f"{before['loadavg'][0]} at the start and {result['machine_after']['loadavg'][0]} at the end. Raw result: "
        f"`{source}` in the results folder (not in git; the script writes it).",
        "",
    ]
    for run in result["runs"]:
        e2e = run["stages"]["poll_to_client"]
        lines += [
            f"### {run['buses']:,} buses, adapter polling every {run['interval_s']:g} s",
            "",
            f"Offered load: {run['served']:,} new position reports served in the {run['seconds']:g} s window "
            f"({run['served'] / run['seconds']:,.0f} reports/s) in {run['bodies']} bodies of the whole fleet "
            f"({run.get('items_per_body') or 0:,} buses in service{_fleet_at(run)}, median), "
            f"after {run['warmup_s']:g} s of warm-up; receipts awaited {run['grace_s']:g} s past the window.",
            "",
            *stage_table(run),
            "",
            f"Poll → client histogram (ms, every report, no bucket open-ended): {histogram_line(e2e)}.",
            "",
            "Missing (served in the window, never seen at the next stage within the grace): "
            f"not on raw.bus {run['missing']['served_not_raw']:,} (the adapter's rejects, and reports its change "
            f"filter held back: the same content as the bus's last one), not on the operator tier "
            f"{run['missing']['raw_not_tier']:,} (the cleaner's drops), not at the client "
            f"{run['missing']['tier_not_client']:,}. Client reports the source never served: "
            f"{run['client_unserved']:,}. Client frames: {run['client']['frames']:,} "
            f"({run['client']['conflated']:,} conflated), {run['client']['repeats']:,} reports received twice.",
            "",
            "Time course (by serve time): "
            + "; ".join(
                f"{s['from_s']}–{s['from_s'] + SLICE_MS // 1000} s p50 {s['p50_ms']:,} / p99 {s['p99_ms']:,} ms"
                for s in run["slices"]
            )
            + ".",
            "",
            adapter_line(run),
            "",
            "CPU over the window, share of one core: "
            + ", ".join(f"{name} {share:.0%}" for name, share in run["cpu_share"].items())
            + ".",
            "",
        ]
        broken = [*run.get("components_died", []), *run.get("receivers_failed", [])]
        if broken:
            lines += [f"**The run broke**: {', '.join(broken)} ended before the window did.", ""]
    lines += [f"- {g.line()}" for g in goals(result)]
    return "\n".join(lines)


def summary_body(result: dict[str, Any], source: str) -> str:
    lines = [
        f"End to end, source poll → client on the undelayed operator tier (docs/benchmarks-e2e.md, `{source}`, "
        f"load {result['machine']['loadavg'][0]}):",
        "",
    ]
    for run in result["runs"]:
        e2e = run["stages"]["poll_to_client"]
        if e2e["count"]:
            lines.append(
                f"- {run['buses']:,} buses, {run['interval_s']:g} s poll, {run['served'] / run['seconds']:,.0f} "
                f"reports/s: p50 {e2e['p50_ms']:,} / p90 {e2e['p90_ms']:,} / p99 {e2e['p99_ms']:,} / max "
                f"{e2e['max_ms']:,} ms over {e2e['count']:,} reports, {100 * e2e['over_slow_share']:.2f} % over "
                f"{SLOW_MS:,} ms"
            )
    lines += [f"- {g.line()}" for g in goals(result)]
    return "\n".join(lines)
