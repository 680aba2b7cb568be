"""Read the policy TOML file and validate it completely before anything uses it.

Rejected with a ``PolicyError`` naming the place: unknown feeds, tiers, keys, fields or operations, bad
parameters, a field an operation does not fit, and any lower tier that would be more precise, faster or
allowed a finer CRS than the tier above it.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any

from geo.service_day import ServiceDay, parse_clock
from schemas import TIERS

from .catalogue import AGGREGATE_SESSION_FIELDS, FIELD_OPS, RECORD_OPS, check_params, finer_than
from .errors import PolicyError
from .fields import CONTEXT_FIELDS, POLICY_FEEDS, POSITION, field_kind, schema_fields
from .model import FeedPolicy, FieldRule, Policy, RecordRule, TierRule
from .tables import TierTable, read_table

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "tier_policy.toml"


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file (the project's default file if ``path`` is None)."""
    file = Path(path) if path is not None else DEFAULT_POLICY_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise PolicyError(f"cannot read policy file {file}: {err.strerror or err}") from None
    return parse_policy(text, source=file.name)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{source}: not valid TOML: {err}") from None
    return _build(data, source)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _build(data: dict[str, Any], source: str) -> Policy:
    unknown = sorted(set(data) - {"version", "tiers", "feeds", "pseudonyms"})
    if unknown:
        raise PolicyError(f"{source}: unknown top-level key(s) {unknown}")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(f'{source}: "version" must be a non-empty string')
    if "tiers" in data and list(data["tiers"]) != list(TIERS):
        raise PolicyError(f"{source}: tiers must be {list(TIERS)} (most precise first), got {data['tiers']!r}")
    feeds = data.get("feeds")
    if not isinstance(feeds, dict):
        raise PolicyError(f"{source}: missing [feeds] tables")
    unknown = sorted(set(feeds) - set(POLICY_FEEDS))
    if unknown:
        raise PolicyError(f"{source}: unknown feed(s) {unknown}; known feeds: {', '.join(POLICY_FEEDS)}")
    missing = [f for f in POLICY_FEEDS if f not in feeds]
    if missing:
        raise PolicyError(f"{source}: no rules for feed(s) {missing}")
    built = {feed: _feed(source, feed, feeds[feed]) for feed in POLICY_FEEDS}
    days = _pseudonym_days(source, data.get("pseudonyms", {}))
    return Policy(version=version.strip(), source=source, feeds=built, pseudonym_days=days)


def _pseudonym_days(source: str, table: Any) -> ServiceDay:
    """``[pseudonyms]``: ``rotate_at`` (local ``HH:MM``, default 03:00) in ``time_zone`` (default
    Asia/Shanghai), the moment every rotating pseudonym changes."""
    where = f"{source}: pseudonyms"
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: must be a table")
    unknown = sorted(set(table) - {"rotate_at", "time_zone"})
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {unknown}; allowed: ['rotate_at', 'time_zone']")
    rotate_at, zone = table.get("rotate_at", "03:00"), table.get("time_zone", "Asia/Shanghai")
    if not isinstance(rotate_at, str) or not isinstance(zone, str):
        raise PolicyError(f'{where}: rotate_at and time_zone are strings, e.g. "03:00" and "Asia/Shanghai"')
    try:
        return ServiceDay(zone, parse_clock(rotate_at))
    except ValueError as err:
        raise PolicyError(f"{where}: {err}") from None


def _feed(source: str, feed: str, table: Any) -> FeedPolicy:
    where = f"{source}: feeds.{feed}"
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: must be a table")
    unknown = sorted(set(table) - {"never_released", *TIERS})
    if unknown:
        raise PolicyError(f"{where}: unknown tier(s) or key(s) {unknown}; tiers are {', '.join(TIERS)}")
    never = table.get("never_released", [])
    if not isinstance(never, list) or not all(isinstance(n, str) for n in never):
        raise PolicyError(f"{where}.never_released: must be a list of field names")
    bad = sorted(set(never) - set(schema_fields(feed)))
    if bad:
        raise PolicyError(f"{where}.never_released: unknown field(s) {bad} for feed {feed!r}")
    never_released = frozenset(never)

    tiers: dict[str, TierRule] = {}
    aggregated = False
    for tier in TIERS:
        if tier not in table:
            raise PolicyError(f"{where}: missing tier table [{'feeds.' + feed + '.' + tier}]")
        rule, aggregated = _tier(f"{where}.{tier}", feed, tier, table[tier], never_released, aggregated)
        tiers[tier] = rule
    _check_order(where, tiers)
    return FeedPolicy(feed=feed, never_released=never_released, tiers=tiers)


def _tier(
    where: str, feed: str, tier: str, table: Any, never: frozenset[str], aggregated: bool
) -> tuple[TierRule, bool]:
    shape = read_table(where, table, TierTable)
    if len(set(shape.crs)) != len(shape.crs):
        raise PolicyError(f"{where}.crs: names a CRS twice (got {shape.crs!r})")
    if tier == TIERS[0] and (shape.fields or shape.records):
        raise PolicyError(f"{where}: the {tier} tier is the raw record and takes no field or record operations")
    if tier == TIERS[0] and shape.delay_s:
        raise PolicyError(f"{where}.delay_s: the {tier} tier is never delayed")
    records: list[RecordRule] = []
    for i, item in enumerate(shape.records):
        record_rule, aggregated = _record_rule(f"{where}.records[{i}]", feed, item, aggregated)
        records.append(record_rule)
    fields = [
        _field_rule(f"{where}.fields.{name}", feed, name, spec, never, aggregated)
        for name, spec in shape.fields.items()
    ]
    rule = TierRule(
        tier=tier,
        delay_ms=_ms(shape.delay_s),
        min_interval_ms=_ms(shape.min_interval_s),
        latency_target_ms=None if shape.latency_target_s is None else _ms(shape.latency_target_s),
        crs=tuple(shape.crs),
        coord_decimals=shape.coord_decimals,
        note=shape.note,
        fields=tuple(fields),
        records=tuple(records),
    )
    return rule, aggregated


def _record_rule(where: str, feed: str, item: dict[str, Any], aggregated: bool) -> tuple[RecordRule, bool]:
    """One ``records`` entry, and whether the sessions are aggregated from here on."""
    if not isinstance(item.get("op"), str):
        raise PolicyError(f"{where}: must be a table with an op")
    op = item["op"]
    if op not in RECORD_OPS:
        raise PolicyError(f"{where}: unknown record operation {op!r}; known: {sorted(RECORD_OPS)}")
    fits, required, optional = RECORD_OPS[op]
    if feed not in fits:
        raise PolicyError(f"{where}: {op!r} does not apply to feed {feed!r} (only {sorted(fits)})")
    params = {k: v for k, v in item.items() if k != "op"}
    check_params(where, params, required, optional)
    if op == "comfort" and len(params["labels"]) != len(params["thresholds"]) + 1:
        raise PolicyError(f"{where}: labels must have one more entry than thresholds")
    for key in ("by", "time_field"):
        if key in params and params[key] not in schema_fields(feed):
            raise PolicyError(f"{where}.{key}: unknown field {params[key]!r} for feed {feed!r}")
    if op == "aggregate_sessions":
        if aggregated:
            raise PolicyError(f"{where}: the sessions are already aggregated by a tier above")
        aggregated = True
    elif op == "suppress_small_groups" and aggregated:
        raise PolicyError(f"{where}: cannot suppress sessions after they were aggregated")
    return RecordRule(op, params), aggregated


def _field_rule(where: str, feed: str, name: str, spec: Any, never: frozenset[str], aggregated: bool) -> FieldRule:
    kind = field_kind(feed, name)
    if kind is None or (aggregated and name not in AGGREGATE_SESSION_FIELDS | CONTEXT_FIELDS | {POSITION}):
        raise PolicyError(f"{where}: unknown field {name!r} for feed {feed!r}")
    if not isinstance(spec, dict) or not isinstance(spec.get("op"), str):
        raise PolicyError(f'{where}: must be a table with an op, e.g. {{ op = "drop" }}')
    op = spec["op"]
    if op not in FIELD_OPS:
        raise PolicyError(f"{where}: unknown operation {op!r}; known: {sorted(FIELD_OPS)}")
    opspec = FIELD_OPS[op]
    params = {k: v for k, v in spec.items() if k != "op"}
    check_params(where, params, opspec.required, opspec.optional)
    if "*" not in opspec.kinds and kind not in opspec.kinds:
        raise PolicyError(f"{where}: {op!r} does not fit a {kind} field")
    if opspec.only_fields and name not in opspec.only_fields:
        raise PolicyError(f"{where}: {op!r} only applies to {sorted(opspec.only_fields)}")
    if op == "station" and feed != "metro":
        raise PolicyError(f"{where}: 'station' snapping needs metro stations; feed {feed!r} has none")
    if op == "truncate" and not (name.endswith("_at") or name.startswith("window_")):
        raise PolicyError(f"{where}: 'truncate' only applies to epoch-ms time fields")
    if name in never and not (op == "drop" or (op == "pseudonym" and params.get("into", name) != name)):
        raise PolicyError(f"{where}: {name!r} is never released; only drop or pseudonym into another field fit")
    if op == "count":
        if params.get("mode") == "random3" and params["base"] != 3:
            raise PolicyError(f"{where}: random rounding is to base 3 (got base {params['base']})")
        if "band" in params and "bands" in params:
            raise PolicyError(f"{where}: give either band or bands, not both")
        if params["k"] > 0 and "band" not in params and "bands" not in params:
            raise PolicyError(f"{where}: k = {params['k']} needs a band label or bands for values below it")
        hidden = [h for h in params.get("hide_below_k", []) if field_kind(feed, h) is None]
        if hidden:
            raise PolicyError(f"{where}.hide_below_k: unknown field(s) {hidden} for feed {feed!r}")
        if "k_field" in params and field_kind(feed, params["k_field"]) != "int":
            raise PolicyError(f"{where}.k_field: {params['k_field']!r} is not a count field of feed {feed!r}")
    return FieldRule(name, op, params)


def _check_order(where: str, tiers: dict[str, TierRule]) -> None:
    """A lower tier may never be faster, allowed a CRS the tier above is not, or more precise."""
    latest: dict[str, tuple[str, FieldRule]] = {}
    for upper_name, lower_name in itertools.pairwise(TIERS):
        upper, lower = tiers[upper_name], tiers[lower_name]
        lw = f"{where}.{lower_name}"
        if lower.delay_ms < upper.delay_ms:
            raise PolicyError(f"{lw}.delay_s: shorter than {upper_name}'s; a lower tier cannot be faster")
        if lower.min_interval_ms < upper.min_interval_ms:
            raise PolicyError(
                f"{lw}.min_interval_s: shorter than {upper_name}'s; a lower tier cannot update more often"
            )
        extra = sorted(set(lower.crs) - set(upper.crs))
        if extra:
            raise PolicyError(f"{lw}.crs: {extra} not allowed at {upper_name}, so not below it either")
        if lower.coord_decimals > upper.coord_decimals:
            raise PolicyError(f"{lw}.coord_decimals: more decimals than {upper_name}'s")
        for rule in lower.fields:
            above = latest.get(rule.field)
            if above is not None:
                complaint = finer_than(rule, above[1])
                if complaint:
                    raise PolicyError(f"{lw}.fields.{rule.field}: {complaint} (at {above[0]})")
        for rule in lower.fields:
            if rule.op != "keep":
                latest[rule.field] = (lower_name, rule)
