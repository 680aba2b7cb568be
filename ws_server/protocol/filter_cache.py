"""Compiled filters shared by every subscription that sends the same filter, and the geometry budget that
pays for compiling new ones.

Validating a polygon is the one costly thing a client can ask for (a 5,000-vertex polygon takes ~18 ms).
Identical filters are compiled once: the cache is keyed by the filter as decoded (every field, in the
order the message type defines, coordinates exactly) and the coordinate system. A filter that is not in
the cache costs its polygon's vertices from the budget of the IP address or key that sent it (a token
bucket of vertices per minute); without enough left, it is refused before any geometry work is done.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from .errors import GEOMETRY_BUDGET, ProtocolError
from .filters import CompiledFilter, DistrictLookup, compile_filter, polygon_vertices
from .limits import TokenBucket
from .messages import Filter

_encode = msgspec.msgpack.Encoder().encode
BUDGET_WINDOW_MS = 60_000


class FilterCache:
    def __init__(self, districts: DistrictLookup, *, max_entries: int = 1024, max_vertices: int = 250_000) -> None:
        self.districts = districts
        self.max_entries = max_entries
        self.max_vertices = max_vertices  # prepared polygons are the big entries: bound them by size too
        self._compiled: OrderedDict[tuple[str, bytes], tuple[CompiledFilter, int]] = OrderedDict()
        self._cached_vertices = 0
        self._budgets: dict[str, TokenBucket] = {}
        self.hits = 0
        self.misses = 0
        self.vertices_validated = 0

    def compile(
        self, flt: Filter, crs: str, *, owner: str | None, vertices_per_minute: int | None, now_ms: int
    ) -> CompiledFilter:
        """``flt`` compiled (see ``compile_filter``), from the cache when anyone sent it before; else its
        polygon's vertices are taken from ``owner``'s budget first (raises ``geometry_budget_exceeded``)."""
        key = (crs, _encode(flt))
        cached = self._compiled.get(key)
        if cached is not None:
            self._compiled.move_to_end(key)
            self.hits += 1
            return cached[0]
        vertices = polygon_vertices(flt.polygon) if flt.polygon is not None else 0
        if vertices and owner is not None and vertices_per_minute is not None:
            self._charge(owner, vertices, vertices_per_minute, now_ms)
        self.misses += 1
        self.vertices_validated += vertices
        compiled = compile_filter(flt, crs, self.districts)  # may raise invalid_filter: the work was done
        self._compiled[key] = (compiled, vertices)
        self._cached_vertices += vertices
        while len(self._compiled) > self.max_entries or self._cached_vertices > self.max_vertices:
            _, (_, dropped) = self._compiled.popitem(last=False)
            self._cached_vertices -= dropped
        return compiled

    def _charge(self, owner: str, vertices: int, per_minute: int, now_ms: int) -> None:
        bucket = self._budgets.get(owner)
        if bucket is None:
            bucket = self._budgets[owner] = TokenBucket(per_minute * 1000 / BUDGET_WINDOW_MS, per_minute, now_ms)
        if not bucket.take(now_ms, vertices):
            wait_s = max(1, round((vertices - bucket.tokens) / (bucket.rate * 1000)))
            raise ProtocolError(
                GEOMETRY_BUDGET,
                f"polygon validation is limited to {per_minute} vertices a minute per IP address or key; "
                f"this one has {vertices}: retry in about {wait_s} s, or reuse a filter already in use",
            )

    def forget_idle_budgets(self, now_ms: int) -> None:
        """Drop the buckets that have refilled completely (they hold nothing a new one would not)."""
        for owner, bucket in list(self._budgets.items()):
            if bucket.tokens + (now_ms - bucket.at) * bucket.rate >= bucket.burst:
                del self._budgets[owner]
