"""The catalogue as DCAT in JSON-LD, the vocabulary open-data portals exchange.

Every property is written as a compact IRI of a prefix in the inline ``@context`` (no remote context, so a
client expands it offline), values with their language or datatype. Terms DCAT has no word for (the tier,
the fields per tier, the release delay) are in this service's own vocabulary, ``shf:``, described on the
human page (``/catalog.html#vocabulary``). Quality figures use W3C DQV.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .entries import Catalogue, FeedEntry, TierRelease
from .metadata import Text

DCAT_PATH = "/catalog"
PAGE_PATH = "/catalog.html"
GTFS_RT_PATH = "/gtfs-rt/vehicle-positions.pb"
FEED_QUERY_PATH = "/v1/feeds/"  # + feed: its current state as JSON pages (docs/http.md)
CONTINUOUS = "http://publications.europa.eu/resource/authority/frequency/UPDATE_CONT"
IANA = "https://www.iana.org/assignments/media-types/"
GTFS_RT_SPEC = "https://gtfs.org/documentation/realtime/reference/"


def context(base_url: str) -> dict[str, str]:
    return {
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "dqv": "http://www.w3.org/ns/dqv#",
        "prov": "http://www.w3.org/ns/prov#",
        "shf": f"{base_url}{PAGE_PATH}#vocabulary-",
    }


def _lang(text: Text) -> list[dict[str, str]]:
    return [{"@value": text.zh, "@language": "zh"}, {"@value": text.en, "@language": "en"}]


def _duration(seconds: float) -> dict[str, str]:
    return {"@value": f"PT{seconds:g}S", "@type": "xsd:duration"}


def _iso(ms: int) -> dict[str, str]:
    when = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"@value": when, "@type": "xsd:dateTime"}


def _id(url: str) -> dict[str, str]:
    return {"@id": url}


def feed_id(base_url: str, feed: str) -> str:
    return f"{base_url}{PAGE_PATH}#feed-{feed}"


def _endpoints(entry: FeedEntry, ws_url: str, base_url: str) -> list[dict[str, Any]]:
    feed = entry.feed
    out: list[dict[str, Any]] = [
        {
            "@type": "shf:Endpoint",
            "shf:protocol": "websocket",
            "dcat:endpointURL": _id(ws_url),
            "shf:message": f'{{"type": "subscribe", "id": "s1", "feed": "{feed}"}}',
        },
        {
            "@type": "shf:Endpoint",
            "shf:protocol": "replay",
            "dcat:endpointURL": _id(ws_url),
            "shf:message": f'{{"type": "replay", "id": "r1", "feed": "{feed}", "from": "…", "to": "…"}}',
        },
        {
            "@type": "shf:Endpoint",
            "shf:protocol": "http",
            "dcat:endpointURL": _id(f"{base_url}{FEED_QUERY_PATH}{feed}"),
            "dcat:endpointDescription": _id(f"{base_url}/openapi.json"),
        },
    ]
    if entry.gtfs_rt:
        out.append(
            {
                "@type": "shf:Endpoint",
                "shf:protocol": "gtfs-realtime",
                "dcat:endpointURL": _id(f"{base_url}{GTFS_RT_PATH}"),
                "dct:conformsTo": _id(GTFS_RT_SPEC),
            }
        )
    return out


def _distribution(entry: FeedEntry, release: TierRelease, base_url: str, ws_url: str) -> dict[str, Any]:
    feed, tier = entry.feed, release.tier
    dist: dict[str, Any] = {
        "@id": f"{feed_id(base_url, feed)}-{tier}",
        "@type": "dcat:Distribution",
        "dct:title": _lang(Text(f"{entry.meta.title.zh}({tier})", f"{entry.meta.title.en} ({tier} tier)")),
        "shf:tier": tier,
        "shf:openingCategory": release.terms.category,
        "dct:license": _id(f"{base_url}{PAGE_PATH}#terms-{tier}"),
        "dct:rights": _lang(release.terms.text),
        "dcat:accessURL": _id(ws_url),
        "dcat:mediaType": _id(f"{IANA}application/json"),
        "dct:conformsTo": _id(f"{base_url}/schemas/{feed}/{tier}.json"),
        "shf:releaseDelay": _duration(release.delay_s),
        "shf:minUpdateInterval": _duration(release.min_interval_s),
        "shf:crs": list(release.crs),
        "shf:field": [
            {"@type": "shf:Field", "shf:name": f.name, "shf:type": f.type, "shf:required": f.required}
            for f in release.fields
        ],
        "shf:withheld": list(release.withheld),
        "shf:endpoint": _endpoints(entry, ws_url, base_url),
    }
    if release.latency_target_s is not None:
        dist["shf:latencyTarget"] = _duration(release.latency_target_s)
    if release.note:
        dist["dct:description"] = {"@value": release.note, "@language": "en"}
    return dist


def _quality(entry: FeedEntry, base_url: str) -> dict[str, Any]:
    q = entry.quality
    out: dict[str, Any] = {"shf:healthState": q.state, "shf:healthReasons": list(q.reasons)}
    measurements = []
    for name, value in q.figures.items():
        if value is None:
            continue
        m: dict[str, Any] = {
            "@type": "dqv:QualityMeasurement",
            "dqv:isMeasurementOf": _id(f"{base_url}{PAGE_PATH}#metric-{name}"),
            "dqv:value": value,
        }
        if q.generated_at is not None:
            m["prov:generatedAtTime"] = _iso(q.generated_at)
        measurements.append(m)
    if measurements:
        out["dqv:hasQualityMeasurement"] = measurements
    return out


def _publisher(entry: FeedEntry, base_url: str) -> dict[str, Any]:
    return {
        "@id": f"{base_url}{PAGE_PATH}#publisher-{entry.meta.publisher}",
        "@type": "foaf:Organization",
        "foaf:name": _lang(Text(entry.publisher_zh, entry.publisher_en)),
    }


def _dataset(entry: FeedEntry, base_url: str, ws_url: str) -> dict[str, Any]:
    meta = entry.meta
    categories = sorted({r.terms.category for r in entry.releases})
    dataset: dict[str, Any] = {
        "@id": feed_id(base_url, entry.feed),
        "@type": "dcat:Dataset",
        "dct:identifier": entry.feed,
        "dct:title": _lang(meta.title),
        "dct:description": _lang(meta.description),
        "dct:publisher": _publisher(entry, base_url),
        "dcat:keyword": [meta.theme, *meta.keywords],
        "shf:grade": meta.grade,
        "shf:gradeLabel": _lang(Text(entry.grade_zh, entry.grade_en)),
        "shf:openingCategory": categories,
        "dct:accrualPeriodicity": _id(CONTINUOUS),
        "dcat:temporalResolution": _duration(entry.update_interval_s),
        "dcat:distribution": [_distribution(entry, r, base_url, ws_url) for r in entry.releases],
        **_quality(entry, base_url),
    }
    if meta.derived_from:
        dataset["prov:wasDerivedFrom"] = [_id(feed_id(base_url, f)) for f in meta.derived_from]
    return dataset


def to_jsonld(catalogue: Catalogue, base_url: str, ws_url: str) -> dict[str, Any]:
    """The whole catalogue as one JSON-LD document (``base_url`` like ``http://127.0.0.1:18765``)."""
    base_url = base_url.rstrip("/")
    return {
        "@context": context(base_url),
        "@id": f"{base_url}{DCAT_PATH}",
        "@type": "dcat:Catalog",
        "dct:title": _lang(Text("上海开放数据实时平台数据目录", "Shanghai Open Feeds data catalogue")),
        "dct:description": _lang(
            Text(
                "本平台开放的实时数据,每项数据按访问级别给出字段、延迟、坐标系、条款和实时质量。",
                "The live feeds this service opens, each with its fields, delay, coordinate system, terms and "
                "live quality per access tier.",
            )
        ),
        "dct:modified": _iso(catalogue.generated_at),
        "shf:policyVersion": catalogue.policy_version,
        "dcat:dataset": [_dataset(e, base_url, ws_url) for e in catalogue.entries],
    }
