"""The fan-out capacity benchmark's judgement, without a broker: where a ramp's knee is, which goals a saved
result meets (a miss said as a miss), its doc sections, and the kernel socket memory read from ``ss``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.fanout.capacity_report import goals, knee, knee_text, page_body, summary_body
from bench.fanout.points import backlog_growth_mb, overloaded
from bench.fanout.sockets import parse_ss

SS = """0      0      127.0.0.1:18930 127.0.0.1:40000
\t skmem:(r0,rb131072,t0,tb2626560,f4096,w1024,o0,bl0,d0)
0      2048   127.0.0.1:18930 127.0.0.1:40001
\t skmem:(r0,rb131072,t0,tb2626560,f2048,w3072,o0,bl0,d0)
5000   0      127.0.0.1:40000 127.0.0.1:18930
\t skmem:(r5120,rb131072,t0,tb2626560,f3072,w0,o0,bl0,d0)
"""


def point(mode: str = "grouped", *, p99: int = 120, over: bool = False, **fields: Any) -> dict[str, Any]:
    base = {
        "mode": mode, "clients": 5000, "viewports": 5000, "rate": 2000, "processes": 1, "distinct_filters": 5000,
        "deliveries_per_s": 20_000.0, "p50_ms": 40, "p99_ms": p99, "max_ms": p99 + 50, "server_cpu": 0.6,
        "cpu_us_per_delivery": 30.0, "kb_per_connection": 30.0, "kernel_kb_per_connection": 4.0,
        "backlog_growth_mb": 0.0, "node_conflated_frames": 0, "slow_closes": 0, "gaps": 0, "overloaded": over,
        "input_records": 30_000,
    }  # fmt: skip
    return base | fields


def alternated(ours: dict[str, Any], tick: dict[str, Any]) -> dict[str, Any]:
    return {"runs": {"grouped": [ours] * 3, "tick": [tick] * 3}, "medians": {"grouped": ours, "tick": tick}}


def sample() -> dict[str, Any]:
    storm = {"seconds": 9.5, "resumed": 10_000, "reset": 0, "gaps_after": 0, "rss_mb_before": 400.0,
             "rss_mb_peak": 520.0, "kernel_kb_per_socket_peak": 12.5, "server_sockets_peak": 10_000}  # fmt: skip
    ours, tick = point(), point("tick", p99=90, cpu_us_per_delivery=24.0)
    return {
        "bench": "fanout-capacity", "git_sha": "b" * 40, "when": "2026-12-06T03:00:00Z",
        "machine": {"loadavg": [1.0, 1.0, 1.0], "cores": 2}, "machine_after": {"loadavg": [2.0, 2.0, 2.0]},
        "settings": {"seconds": 15.0, "rounds": 3},
        "baselines": {"viewports": alternated(ours, tick), "mixed": alternated(point(viewports=0), point("tick"))},
        "per_record": point("baseline", p99=9000, over=True),
        "ramps": {
            "clients": [point(clients=1000), point(clients=10_000, p99=400, over=True)],
            "subscriptions": [point(viewports=117), point(viewports=5000)],
            "rate": [point(rate=2000), point(rate=4000), point(rate=8000, p99=700, over=True)],
            "rate_tick": [point("tick", rate=2000), point("tick", rate=4000, p99=300, over=True)],
        },
        "processes": [point(processes=1), point(processes=2, p99=110)],
        "storm": point(clients=10_000, viewports=0, storm=storm),
        "ticks": [point(tick_ms=50, p99=210, over=True), point(tick_ms=20, p99=110),
                  point(tick_ms=20, viewports=0, p99=130)],
    }  # fmt: skip


def test_the_knee_lies_between_the_last_point_within_bounds_and_the_first_past_them() -> None:
    ramps = sample()["ramps"]
    assert knee(ramps["rate"], "rate") == (4000, 8000)
    assert knee_text(ramps["rate"], "rate", "records/s") == "between 4,000 and 8,000 records/s"
    assert (
        knee_text(ramps["subscriptions"], "viewports", "viewports") == "no knee up to 5,000 viewports (the ramp's end)"
    )


def test_goals_are_judged_from_the_figures_and_a_miss_is_said() -> None:
    assert all(g.met for g in goals(sample()))
    slow = copy.deepcopy(sample())
    slow["baselines"]["viewports"]["medians"]["grouped"]["p99_ms"] = 260
    slow["storm"]["storm"]["gaps_after"] = 4
    missed = [g for g in goals(slow) if not g.met]
    assert [g.name for g in missed] == [
        "fan-out p99 at 5,000 clients, one viewport each, 2,000 records/s",
        "reconnect storm of 10,000 clients while input flows",
    ]
    assert missed[0].line().startswith("MISSED") and "260 ms" in missed[0].measured


def test_sections_show_ratios_ramps_and_the_storm_naming_the_result_file_only() -> None:
    page = page_body(sample(), "fanout-capacity-x.json")
    assert "| server CPU per delivery (µs) | 30.00 | 24.00 | 1.25× |" in page
    assert "ours between 4,000 and 8,000 records/s; the per-tick baseline between 2,000 and 4,000 records/s" in page
    assert "(capacity ratio 2.00×)" in page
    assert "| 10,000 | ours | 5,000 | 2,000 | 20,000 | 40 | 400 | 450 |" in page and "past the knee |" in page
    assert "back in 9.5 s, 10,000 from the replay buffer" in page and "bench/results" not in page
    assert "| 50 ms, viewports | ours | 5,000 | 2,000 | 20,000 | 40 | 210 |" in page
    assert "| 20 ms, mixed | ours |" in page
    older = sample()
    del older["ticks"]  # a result saved before the tick comparison still renders
    assert "The node's tick" not in page_body(older, "fanout-capacity-x.json")
    summary = summary_body(sample(), "fanout-capacity-x.json")
    assert "p99 120 ms against the per-tick broadcast() baseline's 90 ms" in summary
    assert summary.count("- met:") == 3


def test_past_the_knee_is_p99_over_the_bound_a_growing_backlog_or_a_slow_close() -> None:
    assert not overloaded(point())
    assert overloaded(point(p99=201))
    assert overloaded(point(p99=-1))  # nothing received at all
    assert overloaded(point(backlog_growth_mb=3.0))
    # at 300 MB/s a few MB is part of one tick's burst, caught or not by a sample; 50 ms of it is a backlog
    assert not overloaded(point(backlog_growth_mb=3.0, mb_per_s=300.0))
    assert overloaded(point(backlog_growth_mb=16.0, mb_per_s=300.0))
    assert overloaded(point(node_slow_closes=1))
    rows = [{"client_rx_mb": v} for v in (0.1, 0.1, 0.2, 1.0, 2.0, 4.1)]
    assert backlog_growth_mb(rows) == pytest.approx(2.95)  # last third against the first


def test_kernel_socket_memory_is_split_by_side_of_the_connection() -> None:
    memory = parse_ss(SS, 18930)
    assert memory.server_sockets == 2
    assert memory.server_bytes == 4096 + 1024 + 2048 + 3072
    assert memory.client_bytes == 5120 + 3072
    assert memory.per_server_socket() == 5120
