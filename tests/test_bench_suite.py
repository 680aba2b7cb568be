"""The benchmark suite's own judgement, without running anything: the default set must fit its 30 minutes and
every step must have run to its end."""

from __future__ import annotations

from bench.suite import BUDGET_S, DEFAULT, FULL, goals


def result(seconds: list[float], codes: list[int], full: bool = False) -> dict[str, object]:
    pairs = enumerate(zip(seconds, codes, strict=True))
    steps = [{"step": f"s{i}", "seconds": s, "exit_code": c} for i, (s, c) in pairs]
    return {"full": full, "steps": steps}


def test_the_default_set_is_judged_on_its_duration_and_the_full_set_is_not() -> None:
    assert all(g.met for g in goals(result([600, 900], [0, 0])))
    over = goals(result([BUDGET_S, 60], [0, 0]))
    assert [g.met for g in over] == [True, False] and "31.0 minutes" in over[1].measured
    assert len(goals(result([BUDGET_S, 60], [0, 0], full=True))) == 1


def test_a_failed_step_is_named() -> None:
    failed = goals(result([10, 10], [0, 2]))[0]
    assert not failed.met and failed.measured == "s1 failed"


def test_the_full_set_holds_every_step_of_the_default_one() -> None:
    assert {step[0] for step in DEFAULT} <= {step[0] for step in FULL}
