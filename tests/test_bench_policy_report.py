"""The policy benchmark's report: a small real run gives a result whose goals are checked in code and whose
doc sections are generated from it (nothing copied by hand), and a rerun replaces a section in place."""

from __future__ import annotations

import argparse

from bench import policy_engine
from bench.report import replace_between


def test_a_small_run_reports_its_goals_and_writes_its_sections() -> None:
    args = argparse.Namespace(n=4000, loop_n=400, records=200, rounds=3)
    result = {"git_sha": "0" * 40, "when": "2026-12-05T00:00:00Z", **policy_engine.measure(args),
              "machine_before": {"loadavg": [0.5, 0.5, 0.5], "cores": 2},
              "machine_after": {"loadavg": [0.6, 0.5, 0.5], "cores": 2}}  # fmt: skip
    assert {a["identical_share"] > 0.999 for a in result["agreement"].values()} == {True}
    assert len(result["rounds"]) == 3 and set(result["median_per_s"]) >= {"ours", "numpy_port", "per_record_loop"}
    goals = policy_engine.goals(result)
    assert [g.name for g in goals] == ["policy kernel against a plain numpy port", "policy kernel rate on one core"]
    ratio = result["median_per_s"]["ours"] / result["median_per_s"]["numpy_port"]
    assert f"{result['median_per_s']['ours'] / 1e6:.1f} M" in goals[1].measured and ratio > 0
    page = policy_engine.page_section(result, "bench/results/x.json")
    assert "| plain numpy port of the formulae (whole arrays) |" in page and "1.00× |" in page
    summary = policy_engine.summary_section(result)
    assert summary.count("\n") == 2 and "`0000000`" in summary
    doc = replace_between("# Page\n\nhand text\n", "policy-engine", "old")
    doc = replace_between(doc, "policy-engine", summary)
    assert doc.count("<!-- policy-engine -->") == 1 and "old" not in doc and doc.startswith("# Page\n\nhand text\n")
