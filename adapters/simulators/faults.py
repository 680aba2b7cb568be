"""Switchable upstream faults, and the pure transformations that apply them to a feed's payload.

A fault is set per feed (constructor option or ``POST /_faults``):

* ``stall``: the response is held back for ``stall_s`` seconds (or until the fault is cleared);
* ``garbage``: ``mode="records"`` mixes corrupted copies of ``rate`` of the records into the payload;
  ``mode="body"`` replaces the whole body with bytes that are not a valid payload;
* ``duplicates``: ``rate`` of the records appear twice in the payload;
* ``time_jump``: every timestamp in the payload is shifted by ``jump_s`` seconds (negative: back in time);
* ``upstream_error``: a well-formed response whose ``code`` is non-zero (the source reports an error);
* ``http_error``: HTTP 503.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

FaultKind = Literal["stall", "garbage", "duplicates", "time_jump", "upstream_error", "http_error"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
GarbageMode = Literal["records", "body"]


class FaultError(ValueError):
    """A fault specification that cannot be applied; the message says why."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    rate: float = 0.1
    mode: GarbageMode = "records"
    jump_s: int = -3600
    stall_s: float = 30.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(spec: Mapping[str, Any] | str) -> Fault:
    """A ``Fault`` from ``"garbage"`` or ``{"fault": "garbage", "rate": 0.2, ...}``; raises ``FaultError``."""
    if isinstance(spec, str):
        spec = {"fault": spec}
    if not isinstance(spec, Mapping):
        raise FaultError("a fault is a name or an object with a 'fault' member")
    kind = spec.get("fault", spec.get("kind"))
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
    known = {"fault", "kind", "feed", "rate", "mode", "jump_s", "stall_s"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise FaultError(f"unknown fault option(s): {', '.join(unknown)}")
    try:
        rate = float(spec.get("rate", 0.1))
        jump_s = int(spec.get("jump_s", -3600))
        stall_s = float(spec.get("stall_s", 30.0))
    except (TypeError, ValueError) as err:
        raise FaultError(f"bad fault option: {err}") from err
    mode = spec.get("mode", "records")
    if not 0.0 < rate <= 1.0:
        raise FaultError(f"rate must be in (0, 1], got {rate}")
    if mode not in get_args(GarbageMode):
        raise FaultError(f"mode must be 'records' or 'body', got {mode!r}")
    if not 0.0 <= stall_s <= 3600.0:
        raise FaultError(f"stall_s must be within 0..3600, got {stall_s}")
    if abs(jump_s) > 10 * 365 * 86_400:
        raise FaultError(f"jump_s is implausibly large: {jump_s}")
    return Fault(kind=kind, rate=rate, mode=mode, jump_s=jump_s, stall_s=stall_s)


def pick(count: int, rate: float, salt: int) -> list[int]:
    """Indices of about ``rate`` of ``count`` records (at least one when there are any), fixed by ``salt``."""
    if count == 0:
        return []
    rng = np.random.default_rng([salt & 0xFFFFFFFF, 0xFA17])
    n = max(1, round(count * rate))
    return sorted(rng.choice(count, size=min(n, count), replace=False).tolist())


def duplicate_records(records: list[Any], rate: float, salt: int) -> tuple[list[Any], int]:
    """Each picked record is followed by an identical copy; returns the new list and the copies added."""
    chosen = set(pick(len(records), rate, salt))
    out: list[Any] = []
    for i, rec in enumerate(records):
        out.append(rec)
        if i in chosen:
            out.append(copy.deepcopy(rec))
    return out, len(chosen)


# Corruptions a real feed shows: a missing key, a coordinate out of range, a number sent as text, a
# record that is not an object at all.
def _corrupt(record: Any, variant: int, id_key: str) -> Any:
    if not isinstance(record, dict):
        return None
    bad = copy.deepcopy(record)
    choice = variant % 4
    if choice == 0:
        bad.pop(id_key, None)
    elif choice == 1 and "lat" in bad:
        bad["lat"] = 999.0
    elif choice == 1:
        bad[id_key] = ""
    elif choice == 2:
        number_keys = [k for k, v in bad.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        bad[number_keys[variant % len(number_keys)] if number_keys else id_key] = "N/A"
    else:
        return "null" if variant % 8 == 3 else [bad.get(id_key)]
    return bad


def garbage_records(records: list[Any], rate: float, salt: int, id_key: str) -> tuple[list[Any], int]:
    """Corrupted copies of the picked records are mixed in after them; returns the list and how many."""
    chosen = pick(len(records), rate, salt)
    chosen_set = set(chosen)
    out: list[Any] = []
    for i, rec in enumerate(records):
        out.append(rec)
        if i in chosen_set:
            out.append(_corrupt(rec, i + salt, id_key))
    return out, len(chosen)


def garbage_body(body: bytes, salt: int) -> bytes:
    """Bytes that are not a valid payload: a truncated body, an HTML error page, or random bytes."""
    choice = salt % 3
    if choice == 0:
        return body[: max(1, len(body) * 3 // 5)]
    if choice == 1:
        return b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    return np.random.default_rng([salt & 0xFFFFFFFF, 0xB0D7]).bytes(512)
