"""The rate ramp's pure parts: when the lag grows, which step passes, where the knee is, the goal at 80 %
of it and the rendered sections. No network."""

from __future__ import annotations

from typing import Any

from bench.pipeline.ramp_report import goals, knee, lag_growing, page_body, percentiles, step_ok, summary_body

TIERS = ("operator", "licensed", "registered", "public")


def step(rate: int, p99: float | None = 100.0, growing: bool = False) -> dict[str, Any]:
    return {
        "rate": rate,
        "sent": rate * 20,
        "offered_per_s": rate,
        "tiers": {
            t: {"received": rate * 20 if p99 else 0, "p50_ms": 40.0, "p99_ms": p99, "max_ms": p99} for t in TIERS
        },
        "lag_end": 0,
        "lag_slope_per_s": 0,
        "lag_growing": growing,
    }


def test_a_steady_lag_with_one_batch_in_flight_is_not_growing() -> None:
    samples = [(float(t), 2000 if t % 2 else 0) for t in range(20)]
    assert not lag_growing(samples, 8000)


def test_a_lag_that_climbs_is_growing() -> None:
    samples = [(float(t), 3000 * t) for t in range(20)]
    assert lag_growing(samples, 8000)


def test_a_delayed_tier_over_the_limit_fails_the_step() -> None:
    s = step(4000)
    s["tiers"]["public"]["p99_ms"] = 650.0
    assert not step_ok(s)
    assert step_ok(step(4000))
    assert not step_ok(step(4000, p99=None))  # nothing arrived: not a pass


def test_a_throttled_tier_with_nothing_in_a_step_is_not_judged_but_lost_records_fail() -> None:
    s = step(4000)
    s["tiers"]["public"].update(received=0, p99_ms=None)
    assert step_ok(s)
    s["tiers"]["operator"]["received"] -= 1
    assert not step_ok(s)


def test_knee_is_the_last_rate_before_the_first_failure() -> None:
    steps = [step(2000), step(4000), step(6000, growing=True), step(8000)]
    assert knee(steps) == 4000
    assert knee([step(2000, p99=900.0)]) is None
    assert knee([step(2000), step(4000), step(6000)]) == 6000


def test_a_retried_step_counts_by_its_last_attempt() -> None:
    assert knee([step(2000), step(4000, p99=900.0), step(4000), step(6000, growing=True)]) == 4000
    assert knee([step(2000), step(4000), step(4000, p99=900.0)]) == 2000


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles([]) == {"p50_ms": None, "p99_ms": None, "max_ms": None}
    assert (percentiles([10.0] * 99 + [1000.0])["p99_ms"] or 0) < 1000


def sample(hold_p99: float) -> dict[str, Any]:
    run = {"workers": 1, "knee": 10000, "steps": [step(5000), step(10000), step(12000, growing=True)],
           "hold": step(8000, p99=hold_p99), "driver_cpu_cores": 0.4, "worker_cpu_cores": 1.1}  # fmt: skip
    return {
        "bench": "pipeline-ramp",
        "git_sha": "c" * 40,
        "when": "2026-12-05T22:30:00Z",
        "machine": {"loadavg": [2.0, 1.0, 1.0], "cores": 2},
        "machine_after": {"loadavg": [2.5, 1.0, 1.0], "cores": 2},
        "tiers": list(TIERS),
        "step_seconds": 20.0,
        "hold_seconds": 40.0,
        "runs": [
            run,
            {
                "workers": 2,
                "knee": None,
                "steps": [step(5000, p99=800.0)],
                "hold": None,
                "driver_cpu_cores": 0.3,
                "worker_cpu_cores": 1.5,
            },
        ],
    }


def test_goal_at_80_percent_of_capacity() -> None:
    met, no_capacity = goals(sample(hold_p99=300.0))
    assert met.met and "at 8,000 records/s (capacity 10,000/s)" in met.measured
    assert not no_capacity.met and no_capacity.measured == "no capacity found"
    assert not goals(sample(hold_p99=700.0))[0].met


def test_sections_list_every_step_and_the_hold() -> None:
    page = page_body(sample(hold_p99=300.0), "pipeline-ramp-x.json")
    assert "| 12,000 | 12,000 | 40 / 100 | 40 / 100 | 40 / 100 | 40 / 100 | 0 | +0 | – | fail |" in page
    assert "| **hold 80%** | 8,000 |" in page and "capacity (knee) 10,000 records/s" in page
    assert "capacity (knee) – records/s" in page
    loaded = sample(hold_p99=300.0)
    loaded["runs"][0]["steps"][0]["load_1min"] = 3.69873046875
    assert "| +0 | 3.70 | pass |" in page_body(loaded, "x.json")
    assert summary_body(sample(hold_p99=300.0), "x.json").count("- met:") == 1
