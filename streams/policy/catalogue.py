"""The operations a policy file may use: their parameters, which fields they fit, and how coarse they are.

``check_params`` validates one operation's parameters; ``finer_than`` says whether an operation at a lower
tier would release a field more precisely than the operation above it (which the loader rejects).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from geo.blur import Band, check_bands

from .errors import PolicyError
from .model import FieldRule

CONNECTOR_FIELDS = frozenset({"id", "type", "status", "power_kw", "fault_code"})
AGGREGATE_SESSION_FIELDS = frozenset(
    {"id", "source", "observed_at", "expires_at", "station_id", "window_start", "window_end", "sessions"}
    | {"energy_kwh", "lng", "lat", "district"}
)

Checker = Callable[[Any], str | None]  # returns a complaint, or None if the value is fine


def _pos_number(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "must be a positive number"


def _pos_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else "must be a positive integer"


def _nonneg_int(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return None if ok else "must be a non-negative integer"


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _text_list(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, str) and x for x in v)
    return None if ok else "must be a list of strings"


def _connector_keep(v: Any) -> str | None:
    if _text_list(v):
        return "must be a list of connector field names"
    unknown = sorted(set(v) - CONNECTOR_FIELDS)
    if unknown:
        return f"names unknown connector fields {unknown}; known: {sorted(CONNECTOR_FIELDS)}"
    return None if "id" in v else "must keep the connector id"


def _mode(v: Any) -> str | None:
    return None if v in ("nearest", "random3") else 'must be "nearest" or "random3"'


def _length(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 64
    return None if ok else "must be an integer from 8 to 64 (hex characters)"


def parse_bands(v: Any) -> tuple[Band, ...]:
    if not isinstance(v, list):
        raise ValueError("must be a list of {low, high, label} tables")
    bands = []
    for b in v:
        if not isinstance(b, dict) or set(b) - {"low", "high", "label"} or "low" not in b or "label" not in b:
            raise ValueError("each band is a table with low, optional high, and label")
        low, high, label = b["low"], b.get("high"), b["label"]
        if _nonneg_int(low) or (high is not None and _nonneg_int(high)) or _text(label):
            raise ValueError("band low/high must be non-negative integers and label a string")
        bands.append(Band(low, high, label))
    check_bands(bands)
    return tuple(bands)


def _bands(v: Any) -> str | None:
    try:
        parse_bands(v)
    except ValueError as err:
        return str(err)
    return None


def _thresholds(v: Any) -> str | None:
    if not isinstance(v, list) or not v or any(_pos_number(x) for x in v):
        return "must be a non-empty list of positive numbers"
    return None if all(a < b for a, b in itertools.pairwise(v)) else "must be increasing"


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    rank: int  # 0 pass on, 1 coarsen the value, 2 replace it by a coarser kind of value, 3 remove it
    kinds: frozenset[str]  # field kinds it applies to ("*" for any)
    required: Mapping[str, Checker]
    optional: Mapping[str, Checker]
    only_fields: frozenset[str] = frozenset()  # if set, the op fits only these field names


FIELD_OPS: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec("keep", 0, frozenset({"*"}), {}, {}),
        OpSpec("drop", 3, frozenset({"*"}), {}, {}),
        OpSpec("grid", 1, frozenset({"position"}), {"cell_m": _pos_number}, {}),
        OpSpec("station", 2, frozenset({"position"}), {}, {}),
        OpSpec("quantise", 1, frozenset({"float", "int"}), {"step": _pos_number}, {}),
        OpSpec("round", 1, frozenset({"float", "int"}), {"base": _pos_number}, {}),
        OpSpec(
            "count",
            1,
            frozenset({"int"}),
            {"base": _pos_int, "k": _nonneg_int},
            {"k_field": _text, "band": _text, "bands": _bands, "mode": _mode, "hide_below_k": _text_list},
        ),
        OpSpec(
            "zones", 1, frozenset({"list"}), {"base": _pos_int, "k": _nonneg_int}, {"band": _text}, frozenset({"zones"})
        ),
        OpSpec("connectors", 1, frozenset({"list"}), {"keep": _connector_keep}, {}, frozenset({"connectors"})),
        OpSpec(
            "connector_summary",
            2,
            frozenset({"list"}),
            {"per_connector_min": _pos_int},
            {},
            frozenset({"connectors"}),
        ),
        OpSpec("pseudonym", 2, frozenset({"str"}), {}, {"into": _text, "length": _length}),
        OpSpec("public_id", 2, frozenset({"str"}), {}, {"length": _length}),
        OpSpec("truncate", 1, frozenset({"int"}), {"step_s": _pos_int}, {}),
    )
}

RECORD_OPS: dict[str, tuple[frozenset[str], Mapping[str, Checker], Mapping[str, Checker]]] = {
    # name: (feeds it fits, required params, optional params)
    "only_public": (frozenset({"charging"}), {}, {}),
    "suppress_small_groups": (
        frozenset({"charging_sessions"}),
        {"by": _text, "time_field": _text, "window_s": _pos_int, "k": _pos_int},
        {},
    ),
    "aggregate_sessions": (
        frozenset({"charging_sessions"}),
        {"by": _text, "time_field": _text, "window_s": _pos_int},
        {},
    ),
    "comfort": (frozenset({"scenic"}), {"thresholds": _thresholds, "labels": _text_list}, {}),
}


def check_params(
    where: str, params: Mapping[str, Any], required: Mapping[str, Checker], optional: Mapping[str, Checker]
) -> None:
    unknown = sorted(set(params) - set(required) - set(optional))
    if unknown:
        allowed = sorted(set(required) | set(optional))
        raise PolicyError(f"{where}: unknown parameter(s) {unknown}; allowed: {allowed or 'none'}")
    for name in required:
        if name not in params:
            raise PolicyError(f"{where}: missing parameter {name!r}")
    for name, value in params.items():
        check = required.get(name) or optional[name]
        complaint = check(value)
        if complaint:
            raise PolicyError(f"{where}: {name} {complaint} (got {value!r})")


# Parameters where a bigger value is coarser; the lower tier's value must be at least the upper's.
_MONOTONE: dict[str, tuple[str, ...]] = {
    "grid": ("cell_m",),
    "quantise": ("step",),
    "round": ("base",),
    "count": ("base", "k"),
    "zones": ("base", "k"),
    "connector_summary": ("per_connector_min",),
    "truncate": ("step_s",),
}


def finer_than(lower: FieldRule, upper: FieldRule) -> str | None:
    """Why ``lower`` (at a lower tier) would be more precise than ``upper``, or None if it is not."""
    if lower.op == "keep":
        return "cannot be kept: a tier above drops it" if upper.op == "drop" else None
    if upper.op == "drop":
        return f"is dropped by a tier above, so {lower.op!r} cannot release it again"
    lo, up = FIELD_OPS[lower.op], FIELD_OPS[upper.op]
    if lo.rank < up.rank:
        return f"{lower.op!r} is finer than {upper.op!r} above it"
    if lower.op == upper.op:
        for p in _MONOTONE.get(lower.op, ()):
            if p in upper.params and lower.params.get(p, 0) < upper.params[p]:
                return f"{lower.op} {p} = {lower.params.get(p)} is finer than {upper.params[p]} above it"
        if lower.op == "connectors" and not set(lower.params["keep"]) <= set(upper.params["keep"]):
            extra = sorted(set(lower.params["keep"]) - set(upper.params["keep"]))
            return f"keeps connector fields {extra} that a tier above removes"
        if lower.op == "pseudonym" and lower.params.get("into") != upper.params.get("into"):
            return "pseudonymises again into a different field"
        return None
    if lo.rank == up.rank:
        return f"{lower.op!r} cannot follow {upper.op!r} on the same field (different kinds of coarsening)"
    return None
