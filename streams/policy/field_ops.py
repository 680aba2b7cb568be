"""The field operations, each applied to a whole batch in place (positions vectorised)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geo import blur, grid
from geo.metro import metro_network

from .batch import Batch
from .catalogue import parse_bands
from .fields import POSITION
from .model import FieldRule


@dataclass(frozen=True, slots=True)
class OpContext:
    feed: str
    secret: bytes
    # How far each count field of the incoming views may be from the true count (rounding above).
    uncertainty: Mapping[str, float]
    pseudonyms: blur.PseudonymCache


FieldOp = Callable[[Batch, FieldRule, OpContext], None]


def _drop(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    if rule.field == POSITION:
        batch.lngs = np.full_like(batch.lngs, np.nan)
        batch.lats = np.full_like(batch.lats, np.nan)
        return
    for v in batch.views:
        v.pop(rule.field, None)


def _keep(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    return None


def _grid(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    batch.cell_m = float(rule.params["cell_m"])
    batch.lngs, batch.lats = grid.snap_arrays(batch.lngs, batch.lats, batch.cell_m)


def _station(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    """Metro position → nearest station: its coordinate, and its id as ``stop_id``."""
    placed = np.flatnonzero(np.isfinite(batch.lngs) & np.isfinite(batch.lats))
    if placed.size == 0:
        return
    network = metro_network()
    index, _ = network.nearest(batch.lngs[placed], batch.lats[placed])
    batch.lngs[placed] = network.lngs[index]
    batch.lats[placed] = network.lats[index]
    ids = network.ids[index].tolist()
    for i, station_id in zip(placed.tolist(), ids, strict=True):
        batch.views[i]["stop_id"] = station_id


def _quantise(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    step = float(rule.params["step"])
    f = rule.field
    floor, isfinite = math.floor, math.isfinite
    for v in batch.views:
        value = v.get(f)
        # Inlined blur.quantise_angle (same arithmetic): this runs for every vehicle at two tiers.
        if isinstance(value, int | float) and type(value) is not bool and isfinite(value):
            v[f] = float(floor(value / step + 0.5) * step % 360.0)


def _round(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    base = rule.params["base"]
    fbase = float(base)
    int_base = fbase.is_integer()
    f = rule.field
    round_to_base = blur.round_to_base
    isfinite = math.isfinite
    for v in batch.views:
        value = v.get(f)
        if isinstance(value, int | float) and type(value) is not bool and isfinite(value):
            r = round_to_base(float(value), fbase)
            v[f] = int(r) if isinstance(value, int) and int_base else r


def _rounded_count(value: int, params: Mapping[str, Any], seed: bytes) -> int:
    if params.get("mode") == "random3":
        return blur.random_round_3(value, seed)
    return blur.round_count(value, int(params["base"]))


def _released_count(
    value: Any, k_value: Any, k_uncertainty: float, params: Mapping[str, Any], seed: bytes
) -> tuple[str, Any]:
    """("value", n) for an exact/rounded release, ("band", label) below k, ("keep", value) for a band from
    above. The k check uses the smallest true count the incoming value allows, so rounding above can never
    lift a count over k."""
    if isinstance(value, str):
        return ("band", params["band"]) if "band" in params else ("keep", value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return "keep", value
    k = int(params["k"])
    meets_k = isinstance(k_value, int) and not isinstance(k_value, bool) and k_value - k_uncertainty >= k
    if meets_k or k == 0:
        return "value", _rounded_count(value, params, seed)
    if "band" in params:
        return "band", params["band"]
    return "band", blur.band_of(value, parse_bands(params["bands"]))


def _count(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    f = rule.field
    params = rule.params
    k_field = params.get("k_field", f)
    k_unc = ctx.uncertainty.get(k_field, 0.0)
    separate_band = "bands" in params
    random = params.get("mode") == "random3"
    hide = tuple(params.get("hide_below_k", ()))
    for v in batch.views:
        if f not in v:
            continue
        value = v[f]
        seed = ctx.secret + f"|{ctx.feed}|{v.get('id')}|{v.get('observed_at')}|{f}|{value}".encode() if random else b""
        kind, out = _released_count(value, v.get(k_field), k_unc, params, seed)
        if kind == "value" or kind == "keep":
            v[f] = out
            continue
        for other in hide:
            v.pop(other, None)
        if separate_band:
            del v[f]
            v[f"{f}_band"] = out
        else:
            v[f] = out


def _zones(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    params = {**rule.params}
    params.setdefault("band", f"<{params['k']}")
    unc = ctx.uncertainty.get("zones", 0.0)
    random = params.get("mode") == "random3"
    for v in batch.views:
        zones = v.get("zones")
        if not isinstance(zones, list):
            continue
        out = []
        for z in zones:
            if not isinstance(z, dict):
                continue
            zz = dict(z)
            value = zz.get("count")
            seed = (
                b""
                if not random
                else ctx.secret + f"|{ctx.feed}|{v.get('id')}|{v.get('observed_at')}|{zz.get('id')}|{value}".encode()
            )
            _, zz["count"] = _released_count(value, value, unc, params, seed)
            out.append(zz)
        v["zones"] = out


def _connectors(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    keep = tuple(rule.params["keep"])
    for v in batch.views:
        conns = v.get("connectors")
        if isinstance(conns, list):
            v["connectors"] = [{k: c[k] for k in keep if k in c} for c in conns if isinstance(c, dict)]


def _connector_summary(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    minimum = int(rule.params["per_connector_min"])
    for v in batch.views:
        conns = v.get("connectors")
        if not isinstance(conns, list):
            continue
        summary: dict[str, dict[str, int]] = {}
        for c in conns:
            if not isinstance(c, dict):
                continue
            entry = summary.setdefault(str(c.get("type", "OTHER")), {"available": 0, "total": 0})
            entry["total"] += 1
            entry["available"] += c.get("status") == "AVAILABLE"
        v["connector_summary"] = dict(sorted(summary.items()))
        if len(conns) < minimum:
            del v["connectors"]


def _pseudonym(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    f = rule.field
    into = rule.params.get("into", f)
    length = int(rule.params.get("length", 16))
    make = ctx.pseudonyms
    for v in batch.views:
        value = v.get(f)
        if into != f:
            v.pop(f, None)
        if value is None:
            continue
        when = v.get("observed_at")
        day_ms = when if isinstance(when, int) and not isinstance(when, bool) else 0
        v[into] = make(day_ms, value if type(value) is str else str(value), length)


def _public_id(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    """The same keyed id every day: for things, not people (a vehicle's public label names it anyway)."""
    f = rule.field
    length = int(rule.params.get("length", 16))
    make = ctx.pseudonyms.public
    for v in batch.views:
        value = v.get(f)
        if value is not None:
            v[f] = make(value if type(value) is str else str(value), length)


def _truncate(batch: Batch, rule: FieldRule, ctx: OpContext) -> None:
    step_ms = int(rule.params["step_s"]) * 1000
    f = rule.field
    for v in batch.views:
        value = v.get(f)
        if isinstance(value, int) and not isinstance(value, bool):
            v[f] = blur.truncate_time(value, step_ms)


FIELD_OPERATIONS: dict[str, FieldOp] = {
    "keep": _keep,
    "drop": _drop,
    "grid": _grid,
    "station": _station,
    "quantise": _quantise,
    "round": _round,
    "count": _count,
    "zones": _zones,
    "connectors": _connectors,
    "connector_summary": _connector_summary,
    "pseudonym": _pseudonym,
    "public_id": _public_id,
    "truncate": _truncate,
}
