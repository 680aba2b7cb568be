"""Signed checkpoints of the access log's hash chains, kept apart from them (``audit.checkpoints``).

A hash chain alone shows an entry edited, removed or reordered in its middle, but not its last entries cut
off or the whole chain dropped: what is left still verifies. So after every write the server signs its
chain's head (chain, entry number, entry hash) with HMAC-SHA256 under the installation's audit key and
writes that checkpoint to another topic. ``shfeeds audit`` then asks of every chain that its newest
checkpoint's entry be there with that hash; a chain with checkpoints and no entries was deleted.

Entries written after a chain's newest checkpoint (at most one audit interval's) are not yet anchored.
Pure functions, shared by the server and the CLI.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

import orjson

CHECKPOINT_FIELDS = ("chain", "n", "hash", "at", "entries")


def _signed_bytes(checkpoint: dict[str, Any]) -> bytes:
    return orjson.dumps({k: checkpoint.get(k) for k in CHECKPOINT_FIELDS}, option=orjson.OPT_SORT_KEYS)


def sign_checkpoint(key: bytes, chain: str, n: int, head_hash: str, at: int) -> dict[str, Any]:
    """The checkpoint of ``chain`` whose newest entry is number ``n`` with hash ``head_hash``."""
    checkpoint: dict[str, Any] = {"chain": chain, "n": n, "hash": head_hash, "at": at, "entries": n + 1}
    checkpoint["sig"] = hmac.new(key, _signed_bytes(checkpoint), hashlib.sha256).hexdigest()
    return checkpoint


def signature_ok(key: bytes, checkpoint: dict[str, Any]) -> bool:
    expected = hmac.new(key, _signed_bytes(checkpoint), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(checkpoint.get("sig", "")))


def verify_anchors(
    entries: Iterable[dict[str, Any]], checkpoints: Iterable[dict[str, Any]], key: bytes
) -> tuple[list[str], list[str]]:
    """(problems, notes): problems are tampering (a forged checkpoint, a chain cut short or deleted, a
    head that differs from its checkpoint); notes are chains no checkpoint anchors yet."""
    problems: list[str] = []
    by_chain: dict[str, dict[int, str]] = {}
    for entry in entries:
        n = entry.get("n")
        if isinstance(n, int):
            by_chain.setdefault(str(entry.get("chain")), {})[n] = str(entry.get("hash"))
    newest: dict[str, dict[str, Any]] = {}
    for cp in checkpoints:
        chain = str(cp.get("chain"))
        if not signature_ok(key, cp):
            problems.append(f"chain {chain}: checkpoint at entry {cp.get('n')} has a bad signature (forged or edited)")
            continue
        n = cp.get("n")
        if isinstance(n, int) and (chain not in newest or n > newest[chain]["n"]):
            newest[chain] = cp
    for chain, cp in sorted(newest.items()):
        have = by_chain.get(chain)
        n = int(cp["n"])
        if not have:
            problems.append(f"chain {chain}: deleted (its checkpoint records {cp['entries']} entries, none is left)")
        elif n not in have:
            problems.append(
                f"chain {chain}: truncated (its checkpoint records {cp['entries']} entries up to entry {n}; "
                f"the log ends at entry {max(have)})"
            )
        elif have[n] != cp["hash"]:
            problems.append(f"chain {chain}: entry {n} differs from its signed checkpoint (rewritten)")
    notes = [f"chain {c}: no checkpoint anchors it yet" for c in sorted(set(by_chain) - set(newest))]
    return problems, notes
