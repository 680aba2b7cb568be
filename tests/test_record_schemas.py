"""The published record schemas: every record the policy releases at every tier validates against its
tier's schema (which allows no other field), and the generated docs are up to date."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import TIERS
from streams.logic.fanout import decode_value, encode_value
from streams.policy import PolicyEngine, load_policy
from streams.policy.record_schema import all_record_schemas, schemas_json, schemas_markdown

from .test_policy_strategies import BATCHES
from .test_ws_e2e import Stack, stack  # noqa: F401  (the fixture, by its name)

DOCS = Path(__file__).resolve().parent.parent / "docs"
POLICY = load_policy()
ENGINE = PolicyEngine(POLICY, secret=b"schema-test-secret")
SCHEMAS = all_record_schemas(POLICY)
VALIDATORS = {
    (feed, tier): jsonschema.Draft202012Validator(schema)
    for feed, tiers in SCHEMAS.items()
    for tier, schema in tiers.items()
}


def test_every_feed_and_tier_has_a_valid_schema() -> None:
    assert set(SCHEMAS) == set(POLICY.feeds)
    for tiers in SCHEMAS.values():
        assert list(tiers) == list(TIERS)
        for schema in tiers.values():
            jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("feed", sorted(BATCHES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_released_records_match_their_tier_schema(feed: str, data: st.DataObject) -> None:
    records = data.draw(BATCHES[feed])
    for tier, views in ENGINE.apply_all(feed, records).items():
        for view in views:
            view.setdefault("crs", "gcj02")
            view.setdefault("policy_version", ENGINE.policy_version)
            # the record as a client decodes it from the tier topic's bytes
            as_sent = decode_value(encode_value(view))
            errors = sorted(VALIDATORS[(feed, tier)].iter_errors(as_sent), key=str)
            assert not errors, f"{feed}/{tier}: {errors[0].message} in {as_sent}"


def test_a_finer_field_fails_a_lower_tier_schema() -> None:
    record = {
        "id": "bus-1",
        "source": "s",
        "observed_at": 1_795_000_000_000,
        "expires_at": 1_795_000_120_000,
        "lng": 121.47,
        "lat": 31.23,
        "crs": "gcj02",
        "policy_version": "x",
        "speed_kmh": 31.0,
    }
    assert VALIDATORS[("bus", "licensed")].is_valid(record)
    assert not VALIDATORS[("bus", "public")].is_valid(record), "public bus records carry no speed"


def test_generated_docs_are_up_to_date() -> None:
    stale = "out of date: run `shfeeds schemas --write`"
    assert (DOCS / "record-schemas.json").read_text(encoding="utf-8") == schemas_json(POLICY), stale
    assert (DOCS / "record-schemas.md").read_text(encoding="utf-8") == schemas_markdown(POLICY), stale


@pytest.mark.stack
async def test_the_server_serves_the_schemas(stack: Stack) -> None:  # noqa: F811
    base = f"http://127.0.0.1:{stack.node.port}/schemas/"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "records.json") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/schema+json"
            assert await resp.json(content_type=None) == json.loads(json.dumps(SCHEMAS))
        async with http.get(base + "parking/public.json") as resp:
            assert (await resp.json(content_type=None))["x-tier"] == "public"
        async with http.get(base + "parking/nobody.json") as resp:
            assert resp.status == 404
