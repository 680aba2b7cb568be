"""The peers' goals, checked in code, and the generated sections of docs/benchmarks-peers.md and
docs/benchmarks.md. Pure functions of a result dict, so a saved result renders the same way again."""

from __future__ import annotations

from typing import Any

from bench.fanout.points import P99_BOUND_MS
from bench.report import ROOT, Goal

PAGE = ROOT / "docs/benchmarks-peers.md"
SUMMARY = ROOT / "docs/benchmarks.md"
QUIX_MIN_RATIO = 1.5  # our sustained records/s over Quix Streams', same input, same run
CENTRIFUGO_MIN_RATIO = 1.0  # our deliveries/s over Centrifugo's, same clients, filters and rate


def quix_goals(quix: dict[str, Any]) -> list[Goal]:
    med = quix["medians"]
    ours, peer = med["pipeline"]["sustained_per_s"], med["quix"]["sustained_per_s"]
    ratio = ours / peer if ours and peer else 0.0
    eq = quix["equivalence"]
    return [
        Goal(
            "pipeline vs Quix Streams, sustained records/s",
            f"≥ {QUIX_MIN_RATIO}×",
            f"{ratio:.1f}× ({ours:,.0f} vs {peer:,.0f} records/s)",
            ratio >= QUIX_MIN_RATIO,
        ),
        Goal(
            "same output as Quix Streams",
            "equal per-tier counts, no duplicates",
            f"counts {'equal' if eq['equal_counts'] else 'DIFFER'}, {eq['duplicates']} duplicates",
            eq["equal_counts"] and eq["duplicates"] == 0,
        ),
    ]


def best_window(side: dict[str, Any]) -> dict[str, Any] | None:
    """The ramp's highest-rate window still within the bounds (its capacity), None if none was."""
    ok = [w for w in side.get("windows", []) if not w["overloaded"]]
    return max(ok, key=lambda w: w["rate"]) if ok else None


def capacity_rounds(fan: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ramp round's two sides; a result from before the ramps were alternated holds one, as ``capacity``."""
    rounds: list[dict[str, Any]] = fan.get("capacity_rounds") or ([fan["capacity"]] if fan.get("capacity") else [])
    return rounds


def round_ratio(pair: dict[str, Any]) -> float:
    """Our capacity over Centrifugo's in one round (deliveries/s of each side's best window). Knees at the
    same input rate are a tie: both sides delivered every matching record of the same input, and their
    deliveries/s differ only by which records fell inside each window (±0.1 %)."""
    mine, theirs = best_window(pair["ours"]), best_window(pair["centrifugo"])
    if mine and theirs and mine["rate"] == theirs["rate"]:
        return 1.0
    a = mine["deliveries_per_s"] if mine else 0.0
    b = theirs["deliveries_per_s"] if theirs else 0.0
    return a / b if b else (float("inf") if a else 0.0)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose ratio is the median (the lower of the two middle ones for an even count)."""
    ranked = sorted(rounds, key=round_ratio)
    return ranked[(len(ranked) - 1) // 2]


def _knee(side: dict[str, Any]) -> str:
    best = best_window(side)
    return f"{best['rate']:,}" if best else "none"


def centrifugo_goals(fan: dict[str, Any]) -> list[Goal]:
    ours, peer = fan["medians"]["ours"], fan["medians"]["centrifugo"]
    out = []
    rounds = capacity_rounds(fan)
    if rounds:
        pair = median_round(rounds)
        ratio = round_ratio(pair)
        mine, theirs = best_window(pair["ours"]), best_window(pair["centrifugo"])
        each = ", ".join(f"{round_ratio(r):.2f}×" for r in rounds)
        out.append(
            Goal(
                "fan-out vs Centrifugo, deliveries/s at capacity with equal p99 bound",
                f"≥ {CENTRIFUGO_MIN_RATIO}× (each side's highest ramp rate with p99 ≤ {P99_BOUND_MS} ms; median of "
                "the alternated rounds)",
                f"{ratio:.2f}× (rounds: {each}; median round {mine['deliveries_per_s'] if mine else 0:,.0f} at "
                f"{_knee(pair['ours'])} records/s vs {theirs['deliveries_per_s'] if theirs else 0:,.0f} at "
                f"{_knee(pair['centrifugo'])} records/s)",
                ratio >= CENTRIFUGO_MIN_RATIO,
            )
        )
    out.append(
        Goal(
            "memory per connection under load vs Centrifugo",
            "≤ Centrifugo's",
            f"{ours['kb_per_connection']:.1f} vs {peer['kb_per_connection']:.1f} KB RSS",
            ours["kb_per_connection"] <= peer["kb_per_connection"],
        )
    )
    return out


def goals(result: dict[str, Any]) -> list[Goal]:
    return [goal for peer in ("quix", "centrifugo") if result.get(peer) for goal in peer_goals(result, peer)]


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def quix_section(quix: dict[str, Any]) -> str:
    med = quix["medians"]
    lines = [
        f"{quix['records']:,} bus records in raw.bus, every variant on its own topics with the same backlog, "
        f"{quix['rounds']} alternating rounds, medians; one worker process each.",
        "",
        "| variant | records/s | sustained records/s | CPU µs/record |",
        "|---|---|---|---|",
    ]
    for name, label in (("pipeline", "ours (stream worker)"), ("quix", "Quix Streams")):
        m = med[name]
        lines.append(
            f"| {label} | {_num(m['records_per_s'])} | {_num(m['sustained_per_s'])} | "
            f"{_num(m['cpu_us_per_record'], '{:,.1f}')} |"
        )
    eq = quix["equivalence"]
    per_tier = ", ".join(f"{t} {n:,}" for t, n in eq["per_tier_records"].items())
    lines += ["", f"Tier records per run: {per_tier}; equal in every run: {eq['equal_counts']}; "
              f"duplicates: {eq['duplicates']}."]  # fmt: skip
    return "\n".join(lines)


def centrifugo_section(fan: dict[str, Any]) -> str:
    ours, peer = fan["medians"]["ours"], fan["medians"]["centrifugo"]
    lines = [
        f"{fan['clients']:,} clients, {fan['channels']} distinct filters (= Centrifugo channels), "
        f"{fan['rate']:,} records/s for {fan['seconds']:.0f} s, {fan['rounds']} alternating rounds, medians.",
        "",
        "| | ours | Centrifugo |",
        "|---|---|---|",
    ]
    rows = (
        ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
        ("latency p50 (ms, produce → client)", "p50_ms", "{:,.0f}"),
        ("latency p99 (ms, produce → client)", "p99_ms", "{:,.0f}"),
        ("server CPU (cores)", "server_cpu", "{:.2f}"),
        ("bridge CPU (cores; Kafka → Centrifugo API)", "bridge_cpu", "{:.2f}"),
        ("frames/s received", "frames_per_s", "{:,.0f}"),
        ("load generator CPU (cores)", "loadgen_cpu", "{:.2f}"),
        ("memory per idle connection (KB RSS)", "kb_per_idle_connection", "{:.1f}"),
        ("memory per connection under load (KB RSS)", "kb_per_connection", "{:.1f}"),
    )
    for label, key, fmt in rows:
        lines.append(f"| {label} | {_num(ours.get(key), fmt)} | {_num(peer.get(key), fmt)} |")
    rounds = capacity_rounds(fan)
    if rounds:
        capacity = median_round(rounds)
        lines += [
            "",
            f"Capacity: each side on one set of {fan['clients']:,} connections, the input rate raised window by "
            f"window until p99 passed {P99_BOUND_MS} ms or the clients' unread bytes grew; {len(rounds)} "
            "round(s), the two sides back to back and alternated. Each round's highest rate within bounds (ours "
            "vs Centrifugo's, records/s) and the ratio of their deliveries/s: "
            + "; ".join(f"{_knee(r['ours'])} vs {_knee(r['centrifugo'])}, {round_ratio(r):.2f}×" for r in rounds)
            + ". The windows of the median round (server cores: our node; Centrifugo, then the bridge that reads "
            "and filters for it, both on the server's core):",
            "",
            "| side | records/s | deliveries/s | p50 ms | p99 ms | server cores | RSS KB/conn | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for side, label in (("ours", "ours"), ("centrifugo", "Centrifugo")):
            for w in capacity[side].get("windows", []):
                verdict = "past the knee" if w["overloaded"] else "within bounds"
                lines.append(
                    f"| {label} | {w['rate']:,} | {w['deliveries_per_s']:,.0f} | {w['p50_ms']} | {w['p99_ms']} | "
                    f"{_cores(w)} | {w['kb_per_connection']:.1f} | {verdict} |"
                )
    lines += ["", "Every round at the fixed rate (deliveries/s, p99 ms, input records in the window):", ""]
    for side, label in (("ours", "ours"), ("centrifugo", "Centrifugo")):
        each = "; ".join(
            f"{r['deliveries_per_s']:,.0f}, {r['p99_ms']}, {r['input_records']:,}" for r in fan["runs"].get(side, [])
        )
        lines.append(f"- {label}: {each}")
    return "\n".join(lines)


def _cores(window: dict[str, Any]) -> str:
    """The server side's CPU in one ramp window: ``0.55 + 0.40`` when a bridge feeds the server."""
    bridge = window.get("bridge_cpu")
    return f"{window['server_cpu']:.2f}" + ("" if bridge is None else f" + {bridge:.2f}")


def goal_lines(gs: list[Goal]) -> str:
    return "\n".join(f"- {g.line()}" for g in gs)


PEERS = ("quix", "centrifugo")
TITLES = {"quix": "Stream processing: Quix Streams", "centrifugo": "Fan-out: Centrifugo"}


def peer_goals(result: dict[str, Any], peer: str) -> list[Goal]:
    return quix_goals(result["quix"]) if peer == "quix" else centrifugo_goals(result["centrifugo"])


def page_body(result: dict[str, Any], source: str, peer: str) -> str:
    """One peer's section of the page: each peer has its own, so either can be measured again alone."""
    section = quix_section(result["quix"]) if peer == "quix" else centrifugo_section(result["centrifugo"])
    return "\n".join([
        f"### {TITLES[peer]}",
        "",
        f"Measured {result['when']} at `{result['git_sha'][:12]}`, load {result['machine']['loadavg']} on "
        f"{result['machine']['cores']} cores; result file `{source}`.",
        "",
        section,
        "",
        "Goals:",
        "",
        goal_lines(peer_goals(result, peer)),
    ])  # fmt: skip


def summary_body(result: dict[str, Any], source: str, peer: str) -> str:
    return f"{TITLES[peer]} (docs/benchmarks-peers.md, `{source}`):\n\n{goal_lines(peer_goals(result, peer))}"
