"""The data catalogue's core, with no broker: one entry per served feed, fields per tier from the policy,
valid DCAT JSON-LD (expanded with pyld, offline), quality from a health report, the human page."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any

import orjson
import pytest
from pyld import jsonld

from catalog import OPEN_TIERS, MetadataError, build_catalogue, load_metadata
from catalog.dcat import to_jsonld
from catalog.page import to_html, to_text
from catalog.sources import update_intervals_s
from schemas.topics import PIPELINE_FEEDS
from streams.policy import load_policy
from streams.policy.record_schema import tier_record_schema

POLICY = load_policy()
META = load_metadata()
INTERVALS = update_intervals_s(POLICY)
NOW = 1_796_400_000_000
BASE, WS = "http://127.0.0.1:18765", "ws://127.0.0.1:18765/"
DCAT = "http://www.w3.org/ns/dcat#"
DCT = "http://purl.org/dc/terms/"

HEALTH: dict[str, Any] = {
    "schema": 1,
    "generated_at": NOW - 1000,
    "state": "stale",
    "feeds": [
        {
            "feed": "bus",
            "state": "ok",
            "reasons": [],
            "figures": {"records_per_s": 812.5, "staleness_s": 1.2, "completeness": 0.97, "reject_ratio": 0.001},
        },
        {"feed": "parking", "state": "stale", "reasons": ["parking: stale (no data for 300 s)"], "figures": {}},
        {"feed": "metro", "state": "degraded", "reasons": ["metro: rejects 5 %"], "figures": {}},
    ],
}


def catalogue(health: dict[str, Any] | None = None) -> Any:
    return build_catalogue(POLICY, META, INTERVALS, health, NOW)


def test_every_served_feed_and_aggregate_has_one_entry() -> None:
    feeds = [e.feed for e in catalogue().entries]
    assert sorted(feeds) == sorted(PIPELINE_FEEDS) == sorted(POLICY.feeds)
    assert len(feeds) == len(set(feeds))
    aggregates = {e.feed for e in catalogue().entries if e.is_aggregate}
    assert aggregates == {f for f in PIPELINE_FEEDS if f.startswith("agg_")}


def test_each_tier_lists_exactly_the_fields_its_schema_releases() -> None:
    for entry in catalogue().entries:
        assert [r.tier for r in entry.releases] == list(OPEN_TIERS)
        for release in entry.releases:
            schema = tier_record_schema(POLICY, entry.feed, release.tier)
            assert [f.name for f in release.fields] == list(schema["properties"])
            assert {f.name for f in release.fields if f.required} == set(schema["required"])
            rule = POLICY.feeds[entry.feed].tiers[release.tier]
            assert (release.delay_s, release.crs) == (rule.delay_ms / 1000, rule.crs)
    bus = catalogue().entry("bus")
    assert "speed_kmh" not in bus.release("public").field_names
    assert "speed_kmh" in bus.release("public").withheld
    assert {"plate", "driver_id", "diagnostics"} <= set(bus.release("licensed").withheld)
    assert bus.release("licensed").terms.category == "conditional"
    assert bus.release("public").terms.category == "unconditional"


def test_a_feed_without_metadata_is_an_error() -> None:
    meta = replace(META, feeds={k: v for k, v in META.feeds.items() if k != "scenic"})
    with pytest.raises(MetadataError, match="scenic"):
        build_catalogue(POLICY, meta, INTERVALS, None, NOW)


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_the_catalogue_is_dcat_json_ld() -> None:
    doc = to_jsonld(catalogue(HEALTH), BASE, WS)
    # Through bytes, as a client gets it; the context is inline, so expansion needs no network.
    expanded = jsonld.expand(orjson.loads(orjson.dumps(doc)))
    # Every property used is defined (an undefined term would be dropped silently by expansion).
    prefixes = set(doc["@context"])
    undefined = {k for k in _keys(doc) if not k.startswith("@") and k.split(":")[0] not in prefixes}
    assert not undefined
    flat = jsonld.flatten(doc)
    nodes = flat["@graph"] if isinstance(flat, dict) else flat
    by_type: dict[str, list[dict[str, Any]]] = {}
    for node in jsonld.expand(nodes):
        for t in node.get("@type", []):
            by_type.setdefault(t, []).append(node)
    assert len(expanded) == 1 and expanded[0]["@type"] == [DCAT + "Catalog"]
    datasets = by_type[DCAT + "Dataset"]
    assert sorted(d[DCT + "identifier"][0]["@value"] for d in datasets) == sorted(PIPELINE_FEEDS)
    for dataset in datasets:
        assert {t["@language"] for t in dataset[DCT + "title"]} == {"zh", "en"}
        assert {t["@language"] for t in dataset[DCT + "description"]} == {"zh", "en"}
        assert len(dataset[DCAT + "distribution"]) == len(OPEN_TIERS)
        assert DCT + "publisher" in dataset
    distributions = by_type[DCAT + "Distribution"]
    assert len(distributions) == len(PIPELINE_FEEDS) * len(OPEN_TIERS)
    for dist in distributions:
        assert dist[DCT + "license"][0]["@id"].startswith(f"{BASE}/catalog.html#terms-")
        assert dist[DCT + "conformsTo"][0]["@id"].startswith(f"{BASE}/schemas/")
        assert dist[DCAT + "accessURL"][0]["@id"] == WS
    measured = [m for m in by_type.get("http://www.w3.org/ns/dqv#QualityMeasurement", [])]
    assert len(measured) == 4  # the bus figures of HEALTH


def test_quality_comes_from_the_health_report() -> None:
    cat = catalogue(HEALTH)
    bus = cat.entry("bus").quality
    assert bus.state == "ok" and bus.figures["records_per_s"] == 812.5
    assert cat.entry("parking").quality.reasons == ("parking: stale (no data for 300 s)",)
    assert cat.entry("scenic").quality.state == "unknown"  # no figures in the report
    vehicles = cat.entry("agg_vehicles").quality  # bus ok, metro degraded
    assert vehicles.derived and vehicles.state == "degraded"
    assert catalogue(None).entry("bus").quality.state == "unknown"


def test_the_page_and_the_text_show_every_feed() -> None:
    cat = catalogue(HEALTH)
    page = to_html(cat, META, BASE, WS)
    text = to_text(cat)
    for entry in cat.entries:
        assert f'id="feed-{entry.feed}"' in page and entry.meta.title.zh in page
        assert entry.feed in text
    for tier in OPEN_TIERS:
        assert f'id="terms-{tier}"' in page
    for term in sorted({k.split(":", 1)[1] for k in _keys(to_jsonld(cat, BASE, WS)) if k.startswith("shf:")}):
        assert f'id="vocabulary-{term}"' in page, f"shf:{term} is not explained on the page"
    assert "<script" not in page and "https://" not in page.split("</style>")[0]


def test_shfeeds_catalog_prints_one_feed_and_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shfeeds_cli.main",
            "catalog",
            "--feed",
            "scenic",
            "--control-plane",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "scenic" in out and "景区实时客流" in out and "bus " not in out
    doc = orjson.loads(
        subprocess.run(
            [sys.executable, "-m", "shfeeds_cli.main", "catalog", "--json", "--control-plane", "http://127.0.0.1:9"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
    )
    assert len(doc["dcat:dataset"]) == len(PIPELINE_FEEDS)
