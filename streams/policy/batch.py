"""A batch of record views moving down the tiers: dicts for the fields, numpy arrays for the positions.

Positions live only in the arrays (WGS-84, NaN where a record has none) between tiers, so the vectorised
operations never touch the dicts; ``emit`` writes them back converted to the output CRS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from geo import crs as geo_crs
from geo import grid

_encode = msgspec.msgpack.Encoder().encode


@dataclass(slots=True)
class Batch:
    views: list[dict[str, Any]]
    lngs: NDArray[np.float64]
    lats: NDArray[np.float64]
    # Position of each view's record in the input; None once views no longer map to single records
    # (e.g. after an aggregation).
    index: NDArray[np.intp] | None = None
    # The geo.grid cell size the positions were last snapped to: a hint for the CRS conversion, which checks
    # that the points are still that grid's centres before it relies on it (positions_out).
    cell_m: float | None = None

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> Batch:
        lngs = _column([r.get("lng") for r in records])
        lats = _column([r.get("lat") for r in records])
        views = []
        for r in records:
            v = dict(r)
            v.pop("lng", None)
            v.pop("lat", None)
            views.append(v)
        return cls(views, lngs, lats, np.arange(len(views), dtype=np.intp))

    def keep(self, mask: Sequence[bool] | NDArray[np.bool_]) -> None:
        """Keep only the records where ``mask`` is true."""
        m = np.asarray(mask, dtype=bool)
        self.views = [v for v, k in zip(self.views, m.tolist(), strict=True) if k]
        self.lngs = self.lngs[m]
        self.lats = self.lats[m]
        if self.index is not None:
            self.index = self.index[m]


def _column(values: list[Any]) -> NDArray[np.float64]:
    """Coordinates as floats, NaN for a missing or non-numeric one (canonical records: all floats)."""
    if all(type(x) is float for x in values):
        return np.array(values, dtype=np.float64)
    return np.fromiter((_coord(x) for x in values), np.float64, len(values))


def _coord(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float("nan")


# Elements per chunk of the CRS conversion: its dozen temporaries then stay in the CPU cache (about 1.6x
# faster than whole-array passes at a million points; see bench/policy_engine.py).
_CHUNK = 32_768


def positions_out(
    lngs: NDArray[np.float64], lats: NDArray[np.float64], crs: str, decimals: int, cell_m: float | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """WGS-84 positions converted to the output CRS and rounded to ``decimals``. With ``cell_m``, positions
    that are all centres of that grid (snapped) are converted per grid column and row (several times faster);
    any others the general way."""
    if crs != "gcj02":
        return np.round(lngs, decimals), np.round(lats, decimals)
    lattice = grid.lattice_of(lngs, lats, cell_m) if cell_m is not None else None
    if lattice is not None:
        x, y = geo_crs.wgs84_to_gcj02_lattice(lattice)
        return np.round(x, decimals, out=x), np.round(y, decimals, out=y)
    out_x = np.empty_like(lngs)
    out_y = np.empty_like(lats)
    for start in range(0, lngs.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        x, y = geo_crs.wgs84_to_gcj02_arrays(lngs[part], lats[part])
        np.round(x, decimals, out=out_x[part])
        np.round(y, decimals, out=out_y[part])
    return out_x, out_y


def emit(batch: Batch, crs: str, decimals: int, version: str, copy: bool = True) -> list[dict[str, Any]]:
    """The released dicts: each view (a copy unless ``copy`` is false) with its position (if any), ``crs``
    and ``policy_version``."""
    x, y = positions_out(batch.lngs, batch.lats, crs, decimals, batch.cell_m)
    finite = (np.isfinite(x) & np.isfinite(y)).tolist()
    out = []
    for view, lng, lat, has in zip(batch.views, x.tolist(), y.tolist(), finite, strict=True):
        rec = dict(view) if copy else view
        if has:
            rec["lng"] = lng
            rec["lat"] = lat
        rec["crs"] = crs
        rec["policy_version"] = version
        out.append(rec)
    return out


# What ``emit_encoded`` gives per view: its ``id``, its ``observed_at`` and the MessagePack bytes of what
# ``emit`` would have returned for it.
EncodedView = tuple[Any, Any, bytes]


def emit_encoded(batch: Batch, crs: str, decimals: int, version: str) -> list[EncodedView]:
    """``emit`` straight to MessagePack, without a released dict per view: the output keys are set on each
    view, the view is encoded, and the keys are taken off again so the view can still be stepped to the
    next tier. The bytes are those of ``emit``'s dicts (same keys, same order) for views that do not carry
    the output keys themselves, as canonical records do not (their positions live in the arrays); a view
    that does carry them is encoded from a copy, as ``emit`` does."""
    x, y = positions_out(batch.lngs, batch.lats, crs, decimals, batch.cell_m)
    finite = (np.isfinite(x) & np.isfinite(y)).tolist()
    out: list[EncodedView] = []
    append = out.append
    encode = _encode
    for view, lng, lat, has in zip(batch.views, x.tolist(), y.tolist(), finite, strict=True):
        own = "crs" in view or "policy_version" in view or "lng" in view or "lat" in view
        rec = dict(view) if own else view
        if has:
            rec["lng"] = lng
            rec["lat"] = lat
        rec["crs"] = crs
        rec["policy_version"] = version
        append((rec.get("id"), rec.get("observed_at"), encode(rec)))
        if not own:
            if has:
                del view["lng"], view["lat"]
            del view["crs"], view["policy_version"]
    return out
