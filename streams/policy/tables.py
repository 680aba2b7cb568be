"""The shape of a tier's table in the policy file, declared with msgspec as ``schemas/`` declares the records.

msgspec checks the keys, types and ranges; its error becomes a ``PolicyError`` that names the key and the value
found. What depends on the feed or on other tiers (operations, their fields, the order of tiers) is the
loader's work.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta

from .errors import PolicyError

Crs = Literal["gcj02", "wgs84"]
CRS_CHOICES: tuple[str, ...] = get_args(Crs)
Seconds = Annotated[float, Meta(ge=0)]


class TierTable(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``[feeds.<feed>.<tier>]``."""

    delay_s: Seconds = 0.0
    min_interval_s: Seconds = 0.0
    latency_target_s: Seconds | None = None
    crs: Annotated[list[Crs], Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["gcj02"])
    coord_decimals: Annotated[int, Meta(ge=0, le=9)] = 6
    note: str = ""
    # field name → { op = "...", parameters }: each checked against its operation, so any table here
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    # [{ op = "...", parameters }], in order
    records: list[dict[str, Any]] = msgspec.field(default_factory=list)


S = TypeVar("S", bound=msgspec.Struct)
_MISSING = object()
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def read_table(where: str, table: Any, shape: type[S]) -> S:
    """``table`` (from the TOML file) as a ``shape``, or a PolicyError naming ``where`` and the bad key."""
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: must be a table")
    try:
        return msgspec.convert(table, shape)
    except msgspec.ValidationError as err:
        raise PolicyError(_explain(where, table, shape, str(err))) from None


def _explain(where: str, table: dict[str, Any], shape: type[msgspec.Struct], message: str) -> str:
    problem, _, path = message.partition(" - at `$")
    path = path.removesuffix("`")
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", problem)
    if unknown:
        allowed = sorted(field.name for field in msgspec.structs.fields(shape))
        return f"{where}{path}: unknown key {unknown.group(1)!r}; allowed: {allowed}"
    if problem.startswith("Invalid enum value"):
        problem += f"; allowed: {_choices(shape, path)}"
    got = _value_at(table, path)
    return f"{where}{path}: {problem}" + ("" if got is _MISSING else f" (got {got!r})")


def _value_at(table: Any, path: str) -> Any:
    value = table
    for key, index in _PATH_STEP.findall(path):
        try:
            value = value[key] if key else value[int(index)]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _choices(shape: type[msgspec.Struct], path: str) -> list[Any]:
    """The values a Literal key (or a list of them) allows, read from ``shape`` itself."""
    step = _PATH_STEP.match(path)
    info = msgspec.inspect.type_info(shape)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        if step is not None and field.name == step.group(1):
            kind = field.type
            while isinstance(kind, msgspec.inspect.Metadata | msgspec.inspect.ListType):
                kind = kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind.item_type
            if isinstance(kind, msgspec.inspect.LiteralType):
                return list(kind.values)
    return []
