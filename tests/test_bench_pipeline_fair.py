"""The fair-baseline benchmark's pure parts: a run's output held to the reference, equivalence across
runs, the goals judged in code (a miss said as a miss) and the rendered sections. No network."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.pipeline.fair import parse_backlog
from bench.pipeline.fair_report import goals, page_body, rebalance_body, summary_body
from bench.pipeline.outputs import check_run, equivalence

EXPECTED = {"operator": 1000, "licensed": 1000, "registered": 1000, "public": 340}


def tiers(**changes: tuple[int, int]) -> dict[str, dict[str, int]]:
    out = {t: {"records": n, "duplicates": 0} for t, n in EXPECTED.items()}
    for tier, (records, dups) in changes.items():
        out[tier] = {"records": records, "duplicates": dups}
    return out


def run(variant: str, **changes: tuple[int, int]) -> dict[str, Any]:
    t = tiers(**changes)
    return {"variant": variant, "records": 1000, "expected": EXPECTED, "tiers": t, "check": check_run(t, EXPECTED),
            "sustained_per_s": 100.0, "cpu_us_per_record": 50.0, "machine": {"loadavg": [1.5, 1, 1]}}  # fmt: skip


def test_a_run_with_the_reference_counts_and_no_repeats_is_equivalent() -> None:
    assert check_run(tiers(), EXPECTED)["equivalent"]


def test_extra_records_and_duplicates_are_named_per_tier() -> None:
    check = check_run(tiers(public=(353, 13), operator=(1005, 5)), EXPECTED)
    assert not check["equivalent"]
    assert check["missing_or_extra"] == {"operator": 5, "licensed": 0, "registered": 0, "public": 13}
    assert check["duplicates"]["public"] == 13


def test_a_lost_record_hidden_by_a_duplicate_still_fails() -> None:
    # equal count, but one record twice: one is missing
    assert not check_run(tiers(licensed=(1000, 1)), EXPECTED)["equivalent"]


def test_equivalence_across_variants() -> None:
    good = equivalence([run("pipeline"), run("quix")])
    assert good["equal_counts"] and good["duplicates"] == 0 and good["off_reference"] == []
    bad = equivalence([run("pipeline"), run("plain", public=(353, 0))])
    assert not bad["equal_counts"] and bad["off_reference"] == ["plain"]


def test_different_backlogs_are_compared_only_with_their_own() -> None:
    small = {**run("faust"), "records": 200, "tiers": tiers(operator=(200, 0))}
    small.pop("expected")
    assert equivalence([run("pipeline"), small])["equal_counts"]


def with_cpu(variant: str, *cpu: float) -> list[dict[str, Any]]:
    return [{**run(variant), "cpu_us_per_record": c} for c in cpu]


def sample() -> dict[str, Any]:
    runs = {v: [run(v)] * 3 for v in ("pipeline", "plain-overlap", "faust-batched", "quix", "faust")}
    runs["pipeline"] = with_cpu("pipeline", 50.0, 40.0, 70.0)  # over the loop, round by round: 1.43, 1.11, 1.75
    runs["plain-overlap"] = with_cpu("plain-overlap", 35.0, 36.0, 40.0)
    med = {
        "pipeline": {"records_per_s": 15000.0, "sustained_per_s": 16000.0, "cpu_us_per_record": 50.0},
        "plain-overlap": {"records_per_s": 20000.0, "sustained_per_s": 22000.0, "cpu_us_per_record": 35.0},
        "faust-batched": {"records_per_s": 2000.0, "sustained_per_s": 2500.0, "cpu_us_per_record": 320.0},
        "quix": {"records_per_s": 550.0, "sustained_per_s": 600.0, "cpu_us_per_record": 1200.0},
        "faust": {"records_per_s": 500.0, "sustained_per_s": None, "cpu_us_per_record": None},
    }
    return {
        "bench": "pipeline-fair",
        "git_sha": "b" * 40,
        "when": "2026-12-05T22:00:00Z",
        "machine": {"loadavg": [1.5, 1.0, 1.0], "cores": 2},
        "machine_after": {"loadavg": [2.0, 1.0, 1.0], "cores": 2},
        "rounds": 3,
        "workers": 1,
        "backlogs": {v: 1000 for v in med},
        "runs": runs,
        "medians": med,
        "equivalence": equivalence([r for rs in runs.values() for r in rs]),
    }


def test_goals_are_judged_from_the_medians() -> None:
    by_name = {g.name.split(",")[0]: g for g in goals(sample())}
    quix = by_name["pipeline vs Quix Streams"]
    assert quix.met and quix.measured.startswith("26.7×")
    faust = by_name["pipeline vs Faust"]
    assert faust.met and faust.measured.startswith("6.4×")
    cpu = by_name["pipeline CPU per record vs the overlapping plain loop"]
    assert not cpu.met and cpu.measured.startswith("1.43×") and cpu.line().startswith("MISSED")
    assert by_name["same output from every variant"].met


def test_the_cpu_goal_compares_the_two_runs_of_each_round() -> None:
    # The machine slowed down for both in rounds 2 and 3: medians of each (60 vs 30 µs) would say 2.0×.
    result = copy.deepcopy(sample())
    result["runs"]["pipeline"] = with_cpu("pipeline", 30.0, 60.0, 62.0)
    result["runs"]["plain-overlap"] = with_cpu("plain-overlap", 25.0, 50.0, 30.0)
    result["medians"]["pipeline"]["cpu_us_per_record"] = 60.0
    result["medians"]["plain-overlap"]["cpu_us_per_record"] = 30.0
    cpu = next(g for g in goals(result) if g.name.startswith("pipeline CPU"))
    assert cpu.met and cpu.measured.startswith("1.20× (median of the rounds' 1.20×, 1.20×, 2.07×")
    assert "1.20×, 1.20×, 2.07×" in page_body(result, "x.json")


def test_an_output_difference_fails_the_output_goal() -> None:
    result = copy.deepcopy(sample())
    result["runs"]["quix"][1] = run("quix", registered=(990, 0))
    result["equivalence"] = equivalence([r for rs in result["runs"].values() for r in rs])
    goal = goals(result)[-1]
    assert not goal.met and "off the reference: quix" in goal.measured
    assert "records vs reference: registered -10" in page_body(result, "x.json")


def test_sections_show_every_variant_and_name_the_result_file_only() -> None:
    page = page_body(sample(), "pipeline-fair-2026-12-05T220000Z-bbbbbbb.json")
    assert "| ours (stream worker) | 1,000 | 15,000 | 16,000 | 50.0 | 1.00 |" in page
    assert "| Faust, naive per event (secondary) | 1,000 | 500 | – | – | – |" in page
    assert "load [1.5, 1.0, 1.0] before" in page and "bench/results" not in page
    assert summary_body(sample(), "x.json").count("- MISSED:") == 1


def test_backlog_overrides() -> None:
    assert parse_backlog("quix=500")["quix"] == 500
    with pytest.raises(SystemExit):
        parse_backlog("quix=lots")


def test_rebalance_section_shows_each_tier_against_the_reference() -> None:
    result = {**sample(), "workers": 2, "stagger_seconds": 3.0}
    result["runs"] = {"plain": [run("plain", public=(353, 0))], "pipeline": [run("pipeline")]}
    body = rebalance_body(result, "x.json")
    assert "each started 3 s after the previous one" in body
    assert "| 1,000 (1,000) | 1,000 (1,000) | 1,000 (1,000) | 353 (340) | records vs reference: public +13 |" in body
    assert body.endswith("| 340 (340) | right |")
