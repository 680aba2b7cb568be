"""The fan-out capacity benchmark's goals, checked in code, and its generated sections of
docs/benchmarks-fanout.md and docs/benchmarks.md: pure functions of a result dict, so a saved result renders
the same way again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.fanout.points import BACKLOG_GROWTH_MB, BACKLOG_GROWTH_S, P99_BOUND_MS
from bench.report import ROOT, Goal, publish_section

PAGE = ROOT / "docs/benchmarks-fanout.md"
SUMMARY = ROOT / "docs/benchmarks.md"
MODES = {"grouped": "ours", "tick": "per-tick broadcast()", "baseline": "broadcast() per record"}


def knee(points: list[dict[str, Any]], field: str) -> tuple[int | None, int | None]:
    """(the highest value still within bounds, the first value past them), None where the ramp has none."""
    ok = [p[field] for p in points if not p["overloaded"]]
    over = [p[field] for p in points if p["overloaded"]]
    return (max(ok) if ok else None, min(over) if over else None)


def knee_text(points: list[dict[str, Any]], field: str, unit: str) -> str:
    last_ok, first_over = knee(points, field)
    if first_over is None:
        return f"no knee up to {last_ok:,} {unit} (the ramp's end)" if last_ok is not None else "no points"
    if last_ok is None:
        return f"past the bounds already at {first_over:,} {unit}"
    return f"between {last_ok:,} and {first_over:,} {unit}"


def goals(result: dict[str, Any]) -> list[Goal]:
    ours = result["baselines"]["viewports"]["medians"]["grouped"]
    storm = result["storm"]["storm"]
    return [
        Goal(
            "fan-out p99 at 5,000 clients, one viewport each, 2,000 records/s",
            f"≤ {P99_BOUND_MS} ms",
            f"{ours['p99_ms']:.0f} ms (median of {len(result['baselines']['viewports']['runs']['grouped'])} runs)",
            ours["p99_ms"] is not None and 0 <= ours["p99_ms"] <= P99_BOUND_MS,
        ),
        Goal(
            "nothing skipped at that load",
            "0 sequence gaps, 0 slow closes",
            f"{ours['gaps']:.0f} gaps, {ours['slow_closes']:.0f} slow closes",
            ours["gaps"] == 0 and ours["slow_closes"] == 0,
        ),
        Goal(
            "reconnect storm of 10,000 clients while input flows",
            "every client back, 0 sequence gaps after resume",
            f"{storm['resumed']:,} resumed + {storm['reset']:,} reset in {storm['seconds']:.1f} s, "
            f"{storm['gaps_after']} gaps",
            storm["resumed"] + storm["reset"] == result["storm"]["clients"] and storm["gaps_after"] == 0,
        ),
    ]


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "–"


def fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


ROWS: list[tuple[str, str, str, bool]] = [  # label, key, format, whether ours ÷ baseline means anything
    ("record deliveries/s", "deliveries_per_s", ",.0f", True),
    ("latency p50 (ms, producer → client)", "p50_ms", ".0f", True),
    ("latency p99 (ms)", "p99_ms", ".0f", True),
    ("latency max (ms)", "max_ms", ".0f", True),
    ("… of it: producer → read by the node p99 (ms)", "kafka_to_node_p99_ms", ".0f", True),
    ("… of it: read → written to every member p99 (ms)", "node_to_written_p99_ms", ".0f", True),
    ("tick duration, mean (ms)", "tick_ms_avg", ".1f", True),
    ("longest garbage collection (ms)", "gc_ms_max", ".0f", True),
    ("server CPU (cores)", "server_cpu", ".2f", True),
    ("server CPU per delivery (µs)", "cpu_us_per_delivery", ".2f", True),
    ("server RSS per connection under load (KB)", "kb_per_connection", ".1f", True),
    ("kernel socket buffers per server connection under load (KB)", "kernel_kb_per_connection", ".1f", False),
    ("kernel slab memory per connection, both ends (KB)", "slab_kb_per_connection_both_ends", ".1f", True),
    ("growth of clients' unread bytes (MB)", "backlog_growth_mb", ".2f", False),
    ("conflated catch-up frames", "node_conflated_frames", ".0f", False),
    ("slow closes", "slow_closes", ".0f", False),
    ("sequence gaps", "gaps", ".0f", False),
]


def baseline_table(block: dict[str, Any], title: str) -> list[str]:
    med = block["medians"]
    ours, tick = med["grouped"], med["tick"]
    lines = [f"| {title} | ours | per-tick broadcast() | ours ÷ baseline |", "|---|---|---|---|"]
    for label, key, spec, compare in ROWS:
        a, b = ours.get(key), tick.get(key)
        lines.append(f"| {label} | {fmt(a, spec)} | {fmt(b, spec)} | {ratio(a, b) if compare else ''} |")
    return lines


def ramp_table(points: list[dict[str, Any]], field: str, label: str, seconds: float) -> list[str]:
    lines = [
        f"| {label} | mode | distinct filters | input records/s sent | deliveries/s | p50 ms | p99 ms | max ms | "
        "server cores | µs/delivery | RSS KB/conn | kernel KB/conn | unread growth MB | conflated | slow closes | "
        "verdict |",
        "|" + "---|" * 16,
    ]
    for p in points:
        sent = p.get("input_records", 0) / seconds
        value = p[field] if isinstance(p[field], str) else f"{p[field]:,}"
        lines.append(
            f"| {value} | {MODES[p['mode']]} | {p['distinct_filters']:,} | {sent:,.0f} | "
            f"{p['deliveries_per_s']:,.0f} | "
            f"{p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} | {p['server_cpu']:.2f} | "
            f"{fmt(p['cpu_us_per_delivery'], '.2f')} | {p['kb_per_connection']:.1f} | "
            f"{p['kernel_kb_per_connection']:.1f} | {p['backlog_growth_mb']:.2f} | {p['node_conflated_frames']} | "
            f"{p['slow_closes']} | {'past the knee' if p['overloaded'] else 'within bounds'} |"
        )
    return lines


def page_body(result: dict[str, Any], source: str) -> str:
    base = result["baselines"]
    per_record = result["per_record"]
    ramps = result["ramps"]
    one, two = result["processes"]
    storm_point = result["storm"]
    storm = storm_point["storm"]
    secs = result["settings"]["seconds"]
    rate_ours, rate_tick = knee(ramps["rate"], "rate")[0], knee(ramps["rate_tick"], "rate")[0]
    lines = [
        f"Generated by `python -m bench.fanout.capacity` from `{source}` (commit {result['git_sha'][:12]}, "
        f"{result['when']}; load average before {result['machine']['loadavg']}, after "
        f"{result['machine_after']['loadavg']}, {result['machine']['cores']} cores shared by the node, the Go load "
        f"generator and the producer). Every point: {secs:.0f} s of bus records at the stated rate; the node on "
        "CPU 0 and the load generator on CPU 1 unless said otherwise. A point is past the knee when p99 passes "
        f"{P99_BOUND_MS} ms, the clients' unread bytes grow over the window by more than {BACKLOG_GROWTH_MB} MB or "
        f"{BACKLOG_GROWTH_S * 1000:.0f} ms of what they received (whichever is more), "
        "or the node closes a client as slow.",
        "",
        "### Against the fair baseline",
        "",
        f"5,000 clients, 2,000 records/s, medians of {result['settings']['rounds']} alternated runs.",
        "",
        *baseline_table(base["viewports"], "one phone viewport per client (5,000 filters)"),
        "",
        *baseline_table(base["mixed"], "mixed filters (districts, viewports, radii, whole feed)"),
        "",
        f"The naive baseline, one `broadcast()` frame per record ({per_record['clients']:,} clients, mixed "
        "filters, one run): "
        f"{per_record['deliveries_per_s']:,.0f} deliveries/s, p99 {per_record['p99_ms']} ms, "
        f"{per_record['server_cpu']:.2f} cores, {fmt(per_record['cpu_us_per_delivery'], '.2f')} µs per delivery.",
        "",
        "### Capacity ramps",
        "",
        f"- Clients (mixed filters, 2,000 records/s): knee {knee_text(ramps['clients'], 'clients', 'clients')}.",
        f"- Distinct subscriptions at 5,000 clients (one viewport each, shared by clients/N): knee "
        f"{knee_text(ramps['subscriptions'], 'viewports', 'distinct viewports')}.",
        f"- Input rate at 5,000 one-viewport clients: ours {knee_text(ramps['rate'], 'rate', 'records/s')}; "
        f"the per-tick baseline {knee_text(ramps['rate_tick'], 'rate', 'records/s')}"
        + (f" (capacity ratio {ratio(rate_ours, rate_tick)})." if rate_ours and rate_tick else "."),
        "",
        *ramp_table(ramps["clients"], "clients", "clients", secs),
        "",
        *ramp_table(ramps["subscriptions"], "viewports", "viewports", secs),
        "",
        *ramp_table(ramps["rate"] + ramps["rate_tick"], "rate", "records/s", secs),
        "",
        "### `serve --processes` 1 against 2, and a reconnect storm",
        "",
        "The goal's point (5,000 clients, one viewport each, 2,000 records/s); neither node pinned (two processes "
        "share the port with SO_REUSEPORT, each reads the whole tier topic and serves the clients the kernel "
        "gives it), the load generator on CPU 1.",
        "",
        *ramp_table([one, two], "processes", "processes", secs),
        "",
        f"Reconnect storm (one process, mixed filters, p99 before it {storm_point['p99_ms']} ms): all "
        f"{storm_point['clients']:,} connections dropped without a close handshake while "
        f"input continued, then resumed: back in {storm['seconds']:.1f} s, {storm['resumed']:,} from the replay "
        f"buffer, {storm['reset']:,} reset, {storm['gaps_after']} sequence gaps after; server RSS "
        f"{storm['rss_mb_before']:.0f} MiB before, peak {storm['rss_mb_peak']:.0f} MiB during; kernel memory per "
        f"server socket peak {storm['kernel_kb_per_socket_peak']:.1f} KB over {storm['server_sockets_peak']:,} "
        f"sockets; the kernel's slab memory {storm.get('slab_mb_before', 0):.0f} MiB before, peak "
        f"{storm.get('slab_mb_peak', 0):.0f} MiB during (both ends of every connection).",
        "",
        *tick_section(result, secs),
        "Goals (checked in code):",
        "",
        *[f"- {goal.line()}" for goal in goals(result)],
    ]
    return "\n".join(lines)


def tick_section(result: dict[str, Any], secs: float) -> list[str]:
    """The tick's trade: how long a change waits for its frame against the CPU per delivery."""
    if "ticks" not in result:  # results saved before the tick comparison was part of the run
        return []
    rows = [p | {"tick": f"{p['tick_ms']} ms, {'viewports' if p['viewports'] else 'mixed'}"} for p in result["ticks"]]
    return [
        "### The node's tick",
        "",
        "One run per point, ours only, the goal's point and the mixed filters at 5,000 clients and 2,000 "
        "records/s. A change waits for the running tick and then its own, so a shorter tick cuts latency; a "
        "busy stream's frames stay at least 50 ms apart whatever the tick (the node's frame gap), so with "
        "whole-feed clients the frame count does not grow with it.",
        "",
        *ramp_table(rows, "tick", "tick, filters", secs),
        "",
    ]


def summary_body(result: dict[str, Any], source: str) -> str:
    med = result["baselines"]["viewports"]["medians"]
    ours, tick = med["grouped"], med["tick"]
    ramps = result["ramps"]
    lines = [
        f"Fan-out capacity (`{source}`, commit {result['git_sha'][:12]}; docs/benchmarks-fanout.md): at 5,000 "
        f"clients with one viewport each and 2,000 records/s, p99 {fmt(ours['p99_ms'], '.0f')} ms against the "
        f"per-tick broadcast() baseline's {fmt(tick['p99_ms'], '.0f')} ms, server CPU per delivery "
        f"{ratio(ours['cpu_us_per_delivery'], tick['cpu_us_per_delivery'])} the baseline's; on two processes "
        f"sharing the port (`serve --processes 2`) p99 {result['processes'][1]['p99_ms']} ms; knees: clients "
        f"{knee_text(ramps['clients'], 'clients', 'clients')}, input rate "
        f"{knee_text(ramps['rate'], 'rate', 'records/s')}.",
        "",
        *[f"- {goal.line()}" for goal in goals(result)],
    ]
    return "\n".join(lines)


def publish(result: dict[str, Any], path: Path) -> None:
    publish_section(PAGE, "bench:fanout-capacity", page_body(result, path.name))
    publish_section(SUMMARY, "bench:fanout-capacity-summary", summary_body(result, path.name))
