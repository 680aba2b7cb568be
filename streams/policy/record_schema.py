"""Published record schemas: each feed's record as a tier releases it, as JSON Schema (2020-12).

Generated from the msgspec record types (``schemas/records.py``, ``schemas/aggregates.py``) with
``msgspec.json.schema``, then carried down the tiers the way the policy carries the records: each tier's
field and record operations change the schema of the tier above (a dropped field disappears, a count that
may be banded becomes "integer or band label", an aggregation replaces the record's shape...). Every tier
record also carries ``crs`` and ``policy_version``, and a ``state`` when it marks a stale or removed entity.

``docs/record-schemas.md`` and ``docs/record-schemas.json`` are written from here (``shfeeds schemas
--write``); the server serves the same at ``/schemas/records.json`` and ``/schemas/<feed>/<tier>.json``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec

from schemas.aggregates import AGGREGATE_TYPES
from schemas.records import FEED_TYPES
from schemas.topics import TIERS

from .model import FeedPolicy, Policy

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
RECORD_TYPES = {**FEED_TYPES, **AGGREGATE_TYPES}
STATES = ["stale", "removed"]


class UnknownOperation(ValueError):
    """The policy uses an operation this generator does not know how to describe."""


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _base(feed: str) -> tuple[dict[str, Any], dict[str, Any]]:
    record_type = RECORD_TYPES[feed]
    full = msgspec.json.schema(record_type)
    defs: dict[str, Any] = full.get("$defs", {})
    root = copy.deepcopy(defs.pop(record_type.__name__))
    return root, defs


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """Replace every ``$ref`` by its definition, so each tier's schema stands alone."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]), defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


class _Shape:
    """The record's properties and required names while the tiers change them."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.title = str(root.get("title", ""))
        self.description = str(root.get("description", ""))
        self.props: dict[str, Any] = dict(root["properties"])
        self.required: list[str] = list(root.get("required", []))

    def drop(self, name: str) -> None:
        self.props.pop(name, None)
        self.optional(name)

    def optional(self, name: str) -> None:
        if name in self.required:
            self.required.remove(name)

    def items_of(self, name: str) -> dict[str, Any] | None:
        """The item schema of a list field (nullable or not), to change it in place."""
        prop = self.props.get(name)
        if prop is None:
            return None
        for option in prop.get("anyOf", [prop]):
            if option.get("type") == "array":
                items: dict[str, Any] = option["items"]
                return items
        return None


def _count_or_band(prop: dict[str, Any], bands: list[str]) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    return {"anyOf": [*options, {"enum": bands}]}


def _apply_field(shape: _Shape, field: str, op: str, params: dict[str, Any]) -> None:
    if op in ("grid", "station", "quantise", "round", "truncate"):
        return  # the same type, coarser values (station also sets stop_id, a field the record has)
    if op == "drop":
        shape.drop(field)
    elif op == "pseudonym":
        into = str(params.get("into", field))
        if field in shape.props:
            description = "a keyed pseudonym, rotated at the policy's local service-day boundary"
            shape.props[into] = {"type": "string", "description": description}
            if into != field:
                shape.drop(field)
    elif op == "public_id":
        if field in shape.props:
            description = "a keyed public id: the same every day, not the device id"
            shape.props[field] = {"type": "string", "description": description}
    elif op == "count":
        if field not in shape.props:
            return
        for hidden in params.get("hide_below_k", ()):
            shape.optional(str(hidden))
        if "bands" in params:
            shape.optional(field)
            labels = [str(b["label"]) for b in params["bands"]]
            shape.props[f"{field}_band"] = {"enum": labels, "description": f"{field} as a band, below the k floor"}
        else:
            shape.props[field] = _count_or_band(shape.props[field], [str(params["band"])])
    elif op == "zones":
        items = shape.items_of(field)
        if items is not None:
            band = str(params.get("band", f"<{params['k']}"))
            items["properties"]["count"] = _count_or_band(items["properties"]["count"], [band])
    elif op == "connectors":
        items = shape.items_of(field)
        if items is not None:
            keep = [str(k) for k in params["keep"]]
            items["properties"] = {k: v for k, v in items["properties"].items() if k in keep}
            items["required"] = [r for r in items.get("required", []) if r in keep]
    elif op == "connector_summary":
        shape.props["connector_summary"] = {
            "type": "object",
            "description": "per connector type: connectors available and in total",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "available": {"type": "integer", "minimum": 0},
                    "total": {"type": "integer", "minimum": 0},
                },
                "required": ["available", "total"],
                "additionalProperties": False,
            },
        }
        shape.optional(field)
    else:
        raise UnknownOperation(f"no schema rule for the field operation {op!r}")


def _apply_record(shape: _Shape, op: str, params: dict[str, Any]) -> None:
    if op in ("only_public", "suppress_small_groups"):
        return  # fewer records, the same shape
    if op == "comfort":
        shape.props["comfort_band"] = {"enum": [str(x) for x in params["labels"]]}
    elif op == "aggregate_sessions":
        by = str(params["by"])
        epoch = shape.props["observed_at"]
        keep: dict[str, Any] = {k: shape.props[k] for k in ("source", "lng", "lat", "district") if k in shape.props}
        shape.props = {
            "id": {"type": "string", "description": f"<{by}>@<window_start>"},
            "observed_at": epoch,
            "expires_at": epoch,
            by: shape.props.get(by, {"type": "string"}),
            "window_start": epoch,
            "window_end": epoch,
            "sessions": {"type": "integer", "minimum": 0},
            "energy_kwh": {"type": "number", "minimum": 0},
            **keep,
        }
        shape.required = ["id", "observed_at", "expires_at", by, "window_start", "window_end", "sessions"]
        shape.description = f"sessions per {by} and {int(params['window_s']) // 60}-minute window"
    else:
        raise UnknownOperation(f"no schema rule for the record operation {op!r}")


def tier_record_schema(policy: Policy, feed: str, tier: str) -> dict[str, Any]:
    """The JSON Schema of ``feed``'s records in ``tier.<tier>.<feed>`` (and in replays and the archive)."""
    fp: FeedPolicy = policy.feeds[feed]
    root, defs = _base(feed)
    shape = _Shape(_inline(root, defs))
    for t in TIERS[1 : TIERS.index(tier) + 1]:
        rule = fp.tiers[t]
        for rec in rule.records:
            _apply_record(shape, rec.op, dict(rec.params))
        for fr in rule.fields:
            _apply_field(shape, fr.field, fr.op, dict(fr.params))
        if t == TIERS[1]:  # after the tier's own operations, which may derive a field from one of these
            for name in fp.never_released:
                shape.drop(name)
    rule = fp.tiers[tier]
    props = dict(shape.props)
    props["crs"] = {"enum": list(rule.crs), "description": "datum of lng/lat"}
    props["policy_version"] = {"type": "string", "description": "the tier policy the record was released under"}
    props["state"] = {"enum": STATES, "description": "present when the record marks a stale or removed entity"}
    title = f"{feed} record, {tier} tier"
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": title,
        "description": " ".join(p for p in (shape.description, rule.note) if p),
        "type": "object",
        "properties": props,
        "required": [*shape.required, "crs", "policy_version"],
        "additionalProperties": False,
        "x-feed": feed,
        "x-tier": tier,
        "x-policy-version": policy.version,
    }


def all_record_schemas(policy: Policy) -> dict[str, dict[str, dict[str, Any]]]:
    """feed → tier → schema, for every feed of the policy."""
    return {feed: {tier: tier_record_schema(policy, feed, tier) for tier in TIERS} for feed in policy.feeds}


def schemas_json(policy: Policy) -> str:
    return json.dumps(all_record_schemas(policy), ensure_ascii=False, indent=1, sort_keys=False) + "\n"


def _type_text(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_text(o) for o in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}))}"
    if kind == "object" and "properties" in schema:
        return "object (" + ", ".join(schema["properties"]) + ")"
    return str(kind)


def schemas_markdown(policy: Policy) -> str:
    """Field tables per feed and tier, from the same schemas (``docs/record-schemas.md``)."""
    lines = [
        "# Record schemas per feed and tier",
        "",
        "Generated by `shfeeds schemas --write` from the record types and the tier policy "
        f"(version `{policy.version}`); do not edit by hand. The same schemas as JSON Schema (2020-12) are in "
        "`docs/record-schemas.json` and served by the server at `/schemas/records.json` and "
        "`/schemas/<feed>/<tier>.json`. They describe the records of the tier topics, of live frames, of "
        "replays and of the archive's `value` column.",
        "",
    ]
    for feed, tiers in all_record_schemas(policy).items():
        lines += [f"## {feed}", ""]
        for tier, schema in tiers.items():
            lines += [f"### {feed} / {tier}", ""]
            if schema["description"]:
                lines += [schema["description"], ""]
            lines += ["| field | type | required |", "|---|---|---|"]
            required = set(schema["required"])
            for name, prop in schema["properties"].items():
                lines.append(f"| `{name}` | {_type_text(prop)} | {'yes' if name in required else ''} |")
            lines.append("")
    return "\n".join(lines)
