"""The checks `make chaos` ends with (bench/chaos/verdict.py), on hand-made logs: a lost version, a stale
client view and a repeat are each caught, and what a frame legitimately conflates is not called lost."""

from __future__ import annotations

import msgpack

from bench.chaos.verdict import (
    Check,
    dead_letter_version,
    latest_per_entity,
    markdown,
    missing_versions,
    repeated,
    state_matches,
)


def rec(entity: str, t: int, state: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"id": entity, "observed_at": t}
    if state:
        out["state"] = state
    return out


def test_a_version_superseded_before_it_was_sent_is_not_lost_but_one_never_followed_is() -> None:
    log = [("a", 1, ""), ("a", 2, ""), ("a", 3, ""), ("b", 1, ""), ("b", 2, "")]
    seen = [("a", 1, ""), ("a", 3, ""), ("b", 1, "")]  # a@2 conflated into a@3; b@2 never came
    assert missing_versions(log, seen) == [("b", 2, "")]


def test_the_client_view_must_be_the_newest_record_and_removed_entities_gone() -> None:
    log = [rec("a", 1), rec("a", 2), rec("b", 5), rec("c", 1), rec("c", 1, "removed")]
    latest = latest_per_entity(log)
    assert state_matches({"a": rec("a", 2), "b": rec("b", 5)}, latest) == []
    problems = state_matches({"a": rec("a", 1), "c": rec("c", 1)}, latest)
    assert problems == [
        "a: client has (1, ''), Kafka (2, '')",
        "b: missing at the client",
        "c: removed in Kafka, still held by the client",
    ]
    stale = state_matches({"a": rec("a", 2, "stale")}, latest, only=["a"])
    assert stale == ["a: client has (2, 'stale'), Kafka (2, '')"]


def test_repeats_and_dead_letters() -> None:
    assert repeated([("a", 1, ""), ("a", 1, ""), ("a", 1, ""), ("b", 1, "")]) == 2
    letter = {"reason": "impossible jump", "original": msgpack.packb({"id": "OBU-1", "observed_at": 7})}
    assert dead_letter_version(letter) == ("OBU-1", 7, "")
    assert dead_letter_version({"original": b"\xc1not msgpack"}) == ("", 0, "")


def test_the_page_lists_every_check_with_its_verdict() -> None:
    checks = [Check("a broker killed", True, "0 lost | 0 repeated"), Check("memory", False, "700 MiB")]
    result = {"git_sha": "abc", "finished_at": "now", "duration_s": 1.0, "setup": "3 brokers", "held": False}
    page = markdown(checks, {**result, "events": [{"t_s": 3.0, "what": "SIGKILL kafka-2"}]})
    assert "| a broker killed | yes | 0 lost \\| 0 repeated |" in page
    assert "| memory | **NO** | 700 MiB |" in page and "something did not hold" in page
    assert "3 s: SIGKILL kafka-2" in page
