"""The licensed access log's hash chain detects edits, deletions and reordering."""

from __future__ import annotations

from ws_server.audit_chain import GENESIS, chain_entry, verify_chain


def make_chain(n: int) -> list[dict]:
    entries, prev = [], GENESIS
    for i in range(n):
        entry = chain_entry("node1", i, prev, {"records": i, "agreement_id": "AG-1"})
        prev = entry["hash"]
        entries.append(entry)
    return entries


def test_whole_chain_verifies() -> None:
    assert verify_chain(make_chain(5)) == []


def test_edit_deletion_and_reorder_are_detected() -> None:
    edited = make_chain(5)
    edited[2]["records"] = 999
    assert any("edited" in p for p in verify_chain(edited))
    deleted = make_chain(5)
    del deleted[1]
    assert verify_chain(deleted)
    swapped = make_chain(5)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert verify_chain(swapped)
