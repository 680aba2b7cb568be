"""The hash chain of the licensed-tier access log: each entry commits to the one before it, so removing,
reordering or editing an entry breaks every hash after it. Pure functions, shared by server and CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def chain_entry(chain: str, n: int, prev: str, body: dict[str, Any]) -> dict[str, Any]:
    entry = {**body, "chain": chain, "n": n, "prev": prev}
    entry["hash"] = entry_hash(entry)
    return entry


def verify_chain(entries: Iterable[dict[str, Any]]) -> list[str]:
    """Problems found, in order; empty when every chain is whole (entries of several chains may interleave)."""
    problems: list[str] = []
    last: dict[str, tuple[int, str]] = {}
    for entry in entries:
        chain = str(entry.get("chain"))
        n = entry.get("n")
        where = f"chain {chain} entry {n}"
        if entry.get("hash") != entry_hash(entry):
            problems.append(f"{where}: hash does not match its content (edited)")
        prev_n, prev_hash = last.get(chain, (-1, GENESIS))
        if n != prev_n + 1:
            problems.append(f"{where}: expected entry {prev_n + 1} (missing or reordered entries)")
        if entry.get("prev") != prev_hash:
            problems.append(f"{where}: prev does not match the hash of the entry before it")
        last[chain] = (n if isinstance(n, int) else prev_n + 1, str(entry.get("hash")))
    return problems
