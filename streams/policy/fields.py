"""What fields each feed has and what kind of value each holds, read from the canonical record types.

The policy loader checks field names and op/field compatibility against this, so the policy file cannot
name a field that does not exist.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import msgspec

from schemas import FEED_TYPES, FEEDS
from schemas.aggregates import AGGREGATE_TYPES

# Every feed a policy file has rules for: the contract's source feeds, then the stream layer's aggregates.
POLICY_FEEDS: Final = FEEDS + tuple(AGGREGATE_TYPES)
_TYPES: Final = {**FEED_TYPES, **AGGREGATE_TYPES}

# The record's lng/lat as one unit: snapped and converted together.
POSITION: Final = "position"
# Fields the stream layer's enrichment adds (district, scenic area, nearest station) and the state marker
# of stale/removed entities: released as they are unless the policy says otherwise.
CONTEXT_FIELDS: Final = frozenset({"district", "scenic_area", "nearest_station", "state"})
# Fields the policy operations create.
DERIVED_FIELDS: Final = {
    "holder": "str",
    "sessions": "int",
    "window_start": "int",
    "window_end": "int",
    "comfort_band": "str",
    "connector_summary": "dict",
}


def _kind(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.UnionType):
        kinds = {_kind(x) for x in t.types if not isinstance(x, msgspec.inspect.NoneType)}
        return kinds.pop() if len(kinds) == 1 else "other"
    if isinstance(t, msgspec.inspect.IntType):
        return "int"
    if isinstance(t, msgspec.inspect.FloatType):
        return "float"
    if isinstance(t, msgspec.inspect.BoolType):
        return "bool"
    if isinstance(t, msgspec.inspect.StrType | msgspec.inspect.LiteralType):
        return "str"
    if isinstance(t, msgspec.inspect.ListType):
        return "list"
    if isinstance(t, msgspec.inspect.DictType):
        return "dict"
    return "other"


@cache
def schema_fields(feed: str) -> dict[str, str]:
    """Field name → kind ("int", "float", "str", "bool", "list", "dict", "other") of the feed's record."""
    info = msgspec.inspect.type_info(_TYPES[feed])
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.name: _kind(f.type) for f in info.fields}


def field_kind(feed: str, field: str) -> str | None:
    """Kind of a field a policy may name for ``feed`` (None if it is not one)."""
    if field == POSITION:
        return "position" if {"lng", "lat"} <= schema_fields(feed).keys() else None
    kinds = schema_fields(feed)
    if field in kinds:
        return kinds[field]
    if field in DERIVED_FIELDS:
        return DERIVED_FIELDS[field]
    if field in CONTEXT_FIELDS:
        return "str"
    return None


def releasable_fields(feed: str, never_released: frozenset[str]) -> frozenset[str]:
    """Every key a tier below operator may carry for ``feed`` (band fields are added per count op)."""
    names = set(schema_fields(feed)) | CONTEXT_FIELDS | set(DERIVED_FIELDS)
    return frozenset(names - never_released)
