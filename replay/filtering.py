"""A replay's filter is a live subscription's filter (``ws_server/protocol/filters.py``), applied to a
batch of tier records at once: points in GCJ-02 as the live node places them (``ws_server/protocol/places.py``:
a record's own point, converted from ``wgs84`` when its ``crs`` says so, or an aggregate's place), the spatial
test vectorised, then routes and ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from ws_server.districts import lookup_district
from ws_server.protocol.errors import ProtocolError
from ws_server.protocol.filters import CompiledFilter, compile_filter
from ws_server.protocol.messages import Filter
from ws_server.protocol.places import record_point, record_route

from .core import Admit, ReplayError


def admit_for(compiled: CompiledFilter) -> Admit | None:
    """The batch predicate of a compiled filter; None for the empty filter (everything passes)."""
    if not compiled.key:
        return None

    def admit(records: Sequence[dict[str, Any]]) -> list[bool]:
        if not records:
            return []
        points = np.array([record_point(r) for r in records], dtype=np.float64).reshape(-1, 2)
        inside = compiled.mask(points[:, 0], points[:, 1])
        if compiled.spatial:
            inside &= ~np.isnan(points[:, 0])
        return [
            bool(ok) and compiled.admits(str(r.get("id")), record_route(r), r.get("stop_id"))
            for ok, r in zip(inside.tolist(), records, strict=True)
        ]

    return admit


def compile_replay_filter(flt: dict[str, Any] | None, crs: str = "gcj02") -> CompiledFilter:
    """Validate a filter given as plain data (as in a ``subscribe``); raises ``ReplayError`` if invalid."""
    try:
        typed = msgspec.convert(flt or {}, Filter)
        return compile_filter(typed, crs, lookup_district)
    except msgspec.ValidationError as err:
        raise ReplayError(f"invalid filter: {err}") from None
    except ProtocolError as err:
        raise ReplayError(str(err)) from None
