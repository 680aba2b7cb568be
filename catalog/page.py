"""The catalogue for people: an HTML page (served at ``/catalog.html``, no script, no CDN) and plain text
for the terminal (``shfeeds catalog``). Both render the same ``Catalogue`` the JSON-LD is made from."""

from __future__ import annotations

from html import escape
from typing import Any

from .dcat import DCAT_PATH, FEED_QUERY_PATH, GTFS_RT_PATH
from .entries import QUALITY_FIGURES, Catalogue, FeedEntry, TierRelease
from .metadata import CatalogMetadata

# The shf: vocabulary of the JSON-LD, explained once (each term has an anchor: #vocabulary-<term>).
VOCABULARY = {
    "tier": "the access tier a distribution is released to: public, registered or licensed",
    "openingCategory": "unconditional (无条件开放) or conditional (有条件开放) opening",
    "grade": "the feed's sensitivity grade (分级): L1, L2 or L3",
    "gradeLabel": "the grade in words",
    "releaseDelay": "time from an observation to its release at this tier",
    "minUpdateInterval": "at most one update per entity in this interval (PT0S: no cap)",
    "latencyTarget": "the release latency this tier is promised",
    "crs": "the coordinate systems this tier may ask for; the first is the default",
    "field": "a field this tier's records carry (name, JSON type, whether every record has it)",
    "withheld": "fields the tier above receives that this tier does not",
    "endpoint": "where and how to receive the distribution",
    "protocol": "websocket (live), replay (history over the WebSocket), http (current state) or gtfs-realtime",
    "message": "the message to send on the WebSocket",
    "healthState": "the control plane's live state of the feed: ok, degraded, stale, down (unknown: no report)",
    "healthReasons": "why the feed is not ok, in words",
    "policyVersion": "the tier policy version the catalogue was built from",
    "Field": "a released field",
    "Endpoint": "an access point of a distribution",
    "name": "a field's name",
    "type": "a field's JSON type",
    "required": "whether every record carries the field",
}

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2733}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #d5dbe3;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0}th,td{border:1px solid #d5dbe3;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f1f4f8}code{font-size:.9em}.state-ok{color:#17703a}
.state-degraded{color:#9a6700}.state-stale,.state-down{color:#b42318}.state-unknown{color:#5b6675}
.muted{color:#5b6675}
"""


def _e(value: Any) -> str:
    return escape(str(value))


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:g} s"


def _endpoints_html(entry: FeedEntry, ws_url: str, base_url: str) -> str:
    items = [
        f"<li>WebSocket <code>{_e(ws_url)}</code>: "
        f'<code>{{"type": "subscribe", "feed": "{_e(entry.feed)}"}}</code></li>',
        f'<li>replay, same WebSocket: <code>{{"type": "replay", "feed": "{_e(entry.feed)}", ...}}</code></li>',
    ]
    query = base_url + FEED_QUERY_PATH + entry.feed
    items.append(f'<li>HTTP, current state <a href="{_e(query)}">{_e(FEED_QUERY_PATH + entry.feed)}</a></li>')
    if entry.gtfs_rt:
        items.append(f'<li>GTFS-Realtime <a href="{_e(base_url + GTFS_RT_PATH)}">{_e(GTFS_RT_PATH)}</a></li>')
    return "<ul>" + "".join(items) + "</ul>"


def _release_row(entry: FeedEntry, r: TierRelease) -> str:
    fields = ", ".join(f"<code>{_e(f.name)}</code>" for f in r.fields)
    withheld = ", ".join(f"<code>{_e(n)}</code>" for n in r.withheld) or "—"
    schema = f"/schemas/{entry.feed}/{r.tier}.json"
    return (
        f"<tr><td>{_e(r.tier)}</td><td>{_e(r.terms.title.zh)}<br>"
        f'<a href="#terms-{_e(r.tier)}">{_e(r.terms.title.en)}</a></td>'
        f"<td>{fields}</td><td>{withheld}</td><td>{_seconds(r.delay_s)}</td>"
        f"<td>{_seconds(r.min_interval_s) if r.min_interval_s else '—'}</td>"
        f"<td>{_e(', '.join(r.crs))}</td><td>{_e(r.note)}</td>"
        f'<td><a href="{_e(schema)}">{_e(schema)}</a></td></tr>'
    )


def _quality_html(entry: FeedEntry) -> str:
    q = entry.quality
    head = f'<p>Live quality: <strong class="state-{_e(q.state)}">{_e(q.state)}</strong>'
    if q.derived:
        head += " (the worst state of its source feeds)"
    head += "</p>"
    if q.reasons:
        head += "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in q.reasons) + "</ul>"
    if q.figures:
        cells = "".join(
            f'<tr><td id="metric-{_e(k)}">{_e(k)}</td>'
            f"<td>{_e('—' if q.figures.get(k) is None else q.figures[k])}</td></tr>"
            for k in QUALITY_FIGURES
        )
        head += f"<table><tr><th>figure</th><th>value</th></tr>{cells}</table>"
    return head


def _entry_html(entry: FeedEntry, ws_url: str, base_url: str) -> str:
    m = entry.meta
    derived = ""
    if m.derived_from:
        links = ", ".join(f'<a href="#feed-{_e(f)}">{_e(f)}</a>' for f in m.derived_from)
        derived = f"<p>Aggregate of {links}.</p>"
    rows = "".join(_release_row(entry, r) for r in entry.releases)
    return f"""
<section id="feed-{_e(entry.feed)}">
<h2>{_e(m.title.zh)} · {_e(m.title.en)} <code class="muted">{_e(entry.feed)}</code></h2>
<p lang="zh">{_e(m.description.zh)}</p><p lang="en">{_e(m.description.en)}</p>
<p>Publisher: <span id="publisher-{_e(m.publisher)}">{_e(entry.publisher_zh)} / {_e(entry.publisher_en)}</span>.
Grade {_e(m.grade)} ({_e(entry.grade_zh)}, {_e(entry.grade_en)}). Theme: {_e(m.theme)}.
Upstream updates about every {_seconds(entry.update_interval_s)}. Keywords: {_e(", ".join(m.keywords))}.</p>
{derived}
<table><tr><th>tier</th><th>terms</th><th>fields</th><th>withheld</th><th>delay</th><th>per-entity cap</th>
<th>CRS</th><th>note</th><th>schema</th></tr>{rows}</table>
<p>Endpoints:</p>{_endpoints_html(entry, ws_url, base_url)}
{_quality_html(entry)}
</section>"""


def to_html(catalogue: Catalogue, meta: CatalogMetadata, base_url: str, ws_url: str) -> str:
    base_url = base_url.rstrip("/")
    toc = "".join(
        f'<li><a href="#feed-{_e(e.feed)}">{_e(e.meta.title.zh)} · {_e(e.meta.title.en)}</a> '
        f'<span class="state-{_e(e.quality.state)}">{_e(e.quality.state)}</span></li>'
        for e in catalogue.entries
    )
    terms = "".join(
        f'<dt id="terms-{_e(t.tier)}">{_e(t.tier)}: {_e(t.title.zh)} / {_e(t.title.en)} ({_e(t.category)})</dt>'
        f"<dd>{_e(t.text.zh)}<br>{_e(t.text.en)}</dd>"
        for t in meta.terms.values()
    )
    vocab = "".join(
        f'<dt id="vocabulary-{_e(k)}"><code>shf:{_e(k)}</code></dt><dd>{_e(v)}</dd>' for k, v in VOCABULARY.items()
    )
    body = "".join(_entry_html(e, ws_url, base_url) for e in catalogue.entries)
    return f"""<!doctype html>
<html lang="zh-Hans"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>数据目录 · Data catalogue — Shanghai Open Feeds</title><style>{_CSS}</style>
<link rel="alternate" type="application/ld+json" href="{_e(DCAT_PATH)}"></head>
<body><h1>数据目录 · Data catalogue</h1>
<p>Tier policy <code>{_e(catalogue.policy_version)}</code>. Machine-readable (DCAT, JSON-LD):
<a href="{_e(DCAT_PATH)}">{_e(DCAT_PATH)}</a>.</p>
<ul>{toc}</ul>{body}
<h2 id="terms">Terms · 条款</h2><dl>{terms}</dl>
<h2 id="vocabulary">Vocabulary of <code>shf:</code></h2><dl>{vocab}</dl>
</body></html>
"""


def to_text(catalogue: Catalogue) -> str:
    """A terminal summary: per feed, its state, and per tier the delay, CRS and fields."""
    lines = [f"tier policy {catalogue.policy_version}"]
    for e in catalogue.entries:
        m = e.meta
        lines.append("")
        lines.append(f"{e.feed}  {m.title.zh} / {m.title.en}  [{e.quality.state}]")
        lines.append(f"  publisher {e.publisher_en}; grade {m.grade}; upstream every {e.update_interval_s:g} s")
        if m.derived_from:
            lines.append(f"  aggregate of {', '.join(m.derived_from)}")
        for r in e.releases:
            cap = f", ≤ 1 update / {r.min_interval_s:g} s" if r.min_interval_s else ""
            lines.append(f"  {r.tier:<10} {r.terms.category:<13} delay {r.delay_s:g} s{cap}; crs {', '.join(r.crs)}")
            lines.append(f"             fields: {', '.join(f.name for f in r.fields)}")
            if r.withheld:
                lines.append(f"             withheld: {', '.join(r.withheld)}")
        for reason in e.quality.reasons:
            lines.append(f"  ! {reason}")
    return "\n".join(lines) + "\n"
