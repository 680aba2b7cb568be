"""The I/O-free cores of agreements/: the agreement's life, allow-lists, Shanghai days, quotas, usage
tallies and the feedback workflow, with the bundled policy file."""

from __future__ import annotations

import pytest

from agreements import feedback as fb
from agreements import model
from agreements.access import expired, ip_allowed, over_quota, parse_allow_list, shanghai_day
from agreements.policy import load_policy
from agreements.usage import UsageLedger, to_csv
from schemas import FEEDS

T0 = 1_800_000_000_000
POLICY = load_policy()


def licensed(**extra: object) -> model.Agreement:
    args: dict[str, object] = dict(tier="licensed", applicant="a@example.org", purpose="research", feeds=["bus"],
                                   known_feeds=FEEDS, term_days=None, allow_ips=[], now_ms=T0)  # fmt: skip
    args.update(extra)
    return model.apply(POLICY, **args)  # type: ignore[arg-type]


def test_bundled_policy_loads() -> None:
    assert POLICY.registered_daily_messages > 0 and POLICY.licensed_max_term_days >= POLICY.licensed_default_term_days


def test_licensed_request_is_pending_until_approved_then_expires_at_its_term() -> None:
    pending = licensed(term_days=30)
    assert pending.state == model.PENDING and pending.expires_at is None
    approved = model.approve(pending, "op", T0 + 5)
    assert approved.expires_at == T0 + 5 + 30 * model.DAY_MS
    assert approved.state_at(approved.expires_at - 1) == model.APPROVED
    assert approved.state_at(approved.expires_at) == model.EXPIRED
    with pytest.raises(model.AgreementError):
        model.approve(approved, "op", T0 + 6)
    withdrawn = model.withdraw(approved, "op", T0 + 7, reason="breach")
    assert withdrawn.state == model.WITHDRAWN and [h["action"] for h in withdrawn.history] == [
        "apply",
        "approve",
        "withdraw",
    ]
    assert model.from_json(withdrawn.to_json(T0)) == withdrawn


def test_bad_applications_and_steps_are_refused() -> None:
    with pytest.raises(model.AgreementError, match="feeds and the purpose"):
        licensed(feeds=[])
    with pytest.raises(model.AgreementError, match="unknown feed"):
        licensed(feeds=["ferries"])
    with pytest.raises(model.AgreementError, match="term"):
        licensed(term_days=POLICY.licensed_max_term_days + 1)
    with pytest.raises(model.AgreementError, match="not an IP"):
        licensed(allow_ips=["10.0.0.300"])
    with pytest.raises(model.AgreementError, match="reason"):
        model.reject(licensed(), "op", T0, reason=" ")


def test_registered_application_is_approved_at_once_with_the_default_quota() -> None:
    reg = licensed(tier="registered", feeds=[], purpose="")
    assert reg.state == model.APPROVED and reg.daily_quota == POLICY.registered_daily_messages


def test_allow_list_day_and_quota() -> None:
    allow = parse_allow_list(["127.0.0.1", "10.1.0.0/16"], 4)
    assert allow == ("127.0.0.1/32", "10.1.0.0/16")
    assert ip_allowed(allow, "10.1.200.3") and not ip_allowed(allow, "127.0.0.2") and not ip_allowed(allow, "?")
    assert ip_allowed((), "203.0.113.9")
    # 16:00 UTC is midnight in Shanghai.
    assert shanghai_day(1_796_400_000_000 - 1) == "2026-12-04" and shanghai_day(1_796_400_000_000) == "2026-12-05"
    assert over_quota(4, 4) and not over_quota(4, 3) and not over_quota(None, 10**9)
    assert expired(T0, T0) and not expired(None, T0)


def test_usage_ledger_adds_up_and_drains() -> None:
    ledger = UsageLedger()
    ledger.add("k1", "AG-1", "bus", messages=2, records=5, bytes=100)
    ledger.add("k1", "AG-1", "bus", messages=1, records=1, bytes=20)
    ledger.add("k1", "AG-1", "*", sessions=1)
    assert ledger.pending_messages("k1") == 3
    assert ledger.drain() == {("k1", "AG-1", "bus"): {"messages": 3, "records": 6, "bytes": 120},
                              ("k1", "AG-1", "*"): {"sessions": 1}}  # fmt: skip
    assert ledger.drain() == {}
    csv = to_csv([{"day": "2026-12-05", "key_id": "k1", "feed": "bus", "messages": 3}])
    assert csv.splitlines()[1] == "2026-12-05,k1,,bus,3,0,0,0,0"


def test_feedback_workflow_and_rate_limit() -> None:
    report = fb.new_report(feed="bus", owner="jiushi", entity_id="b1", problem="wrong route", reporter="ip:1",
                           now_ms=T0, max_text=100)  # fmt: skip
    confirmed = fb.set_status(report, fb.CONFIRMED, "looking", "op", T0 + 1)
    fixed = fb.set_status(confirmed, fb.FIXED, "", "op", T0 + 2)
    assert fixed.status == fb.FIXED and fixed.reply == "looking"
    with pytest.raises(fb.FeedbackError, match="final"):
        fb.set_status(fixed, fb.REJECTED, "no", "op", T0 + 3)
    with pytest.raises(fb.FeedbackError):
        fb.new_report(feed="bus", owner="x", entity_id="", problem=" ", reporter="ip:1", now_ms=T0, max_text=10)
    limiter = fb.ReportLimiter(per_hour=3600, burst=2)
    assert [limiter.allow("ip:1", T0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("ip:2", T0) and limiter.allow("ip:1", T0 + 1000)
