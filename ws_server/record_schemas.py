"""The published record schemas over HTTP: ``/schemas/records.json`` (feed → tier → JSON Schema) and
``/schemas/<feed>/<tier>.json``, for the policy the stream workers use (``SHFEEDS_POLICY_PATH`` or the
project's default file). See ``streams/policy/record_schema.py``."""

from __future__ import annotations

import os
from functools import cache

import orjson

from streams.policy import load_policy
from streams.policy.record_schema import all_record_schemas


@cache
def _bodies() -> dict[str, bytes]:
    schemas = all_record_schemas(load_policy(os.environ.get("SHFEEDS_POLICY_PATH") or None))
    out = {"records.json": orjson.dumps(schemas)}
    for feed, tiers in schemas.items():
        for tier, schema in tiers.items():
            out[f"{feed}/{tier}.json"] = orjson.dumps(schema)
    return out


def schema_response_body(name: str) -> bytes | None:
    """The body for ``/schemas/<name>``, or None if there is no such schema."""
    return _bodies().get(name)
