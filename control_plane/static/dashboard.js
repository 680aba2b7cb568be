// The operator dashboard: reads /health/feeds and each feed's last hour, no library, no CDN.
"use strict";

const $ = (sel) => document.querySelector(sel);
window.shfeeds = { rows: 0, charts: 0, report: null };

function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %"; }
function ago(ms, now) {
  if (!ms) return "never";
  const s = (now - ms) / 1000;
  return s < 120 ? s.toFixed(0) + " s ago" : (s / 60).toFixed(0) + " min ago";
}
function seconds(ms) { return ms === null || ms === undefined ? "–" : ms / 1000 + " s"; }
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function sparkline(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 160 28");
  const max = Math.max(1, ...points);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map((v, i) => `${(i * 160) / Math.max(1, points.length - 1)},${26 - (24 * v) / max}`).join(" "));
  svg.appendChild(line);
  return svg;
}

async function history(feed) {
  const r = await fetch(`/health/feeds/${encodeURIComponent(feed)}/history`);
  if (!r.ok) return [];
  const h = await r.json();
  // Per minute: what the feed's sources delivered, else what the clean stage took in.
  const sources = Object.values(h.sources);
  return h.minutes.map((m, i) => sources.reduce((n, s) => n + s[i].records, 0) || m.records);
}

async function showDetails(feed) {
  const r = await fetch(`/health/feeds/${encodeURIComponent(feed)}/history`);
  const report = window.shfeeds.report.feeds.find((f) => f.feed === feed);
  $("#details").hidden = false;
  $("#details-title").textContent = `${feed}: figures and last hour`;
  $("#details-body").textContent = JSON.stringify({ health: report, history: await r.json() }, null, 2);
}

async function refresh() {
  const r = await fetch("/health/feeds");
  const report = await r.json();
  window.shfeeds.report = report;
  const now = report.generated_at;
  $("#overall").textContent = report.state;
  $("#overall").className = "state " + report.state;
  $("#updated").textContent = "updated " + new Date(now).toLocaleTimeString();
  const body = $("#feeds tbody");
  const rows = [];
  let charts = 0;
  const samples = [];
  for (const f of report.feeds) {
    const fig = f.figures;
    const tr = document.createElement("tr");
    tr.dataset.feed = f.feed;
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = `#${f.feed}`;
    link.textContent = f.feed;
    link.addEventListener("click", (e) => { e.preventDefault(); showDetails(f.feed); });
    name.appendChild(link);
    tr.appendChild(name);
    const state = cell(f.state);
    state.innerHTML = `<span class="state ${f.state}"></span>`;
    state.firstChild.textContent = f.state;
    tr.appendChild(state);
    tr.appendChild(cell(ago(fig.last_seen_ms, now)));
    tr.appendChild(cell(fig.records_per_s.toFixed(1), "num"));
    tr.appendChild(cell(pct(fig.reject_ratio), "num"));
    tr.appendChild(cell(pct(fig.duplicate_ratio), "num"));
    tr.appendChild(cell(pct(fig.completeness), "num"));
    tr.appendChild(cell(seconds(fig.event_lag_p99_ms), "num"));
    tr.appendChild(cell(seconds(fig.ingest_lag_p99_ms), "num"));
    tr.appendChild(cell(String(fig.consumer_lag_max ?? "–"), "num"));
    const chart = document.createElement("td");
    const points = await history(f.feed);
    if (points.some((v) => v > 0)) charts++;
    chart.appendChild(sparkline(points));
    tr.appendChild(chart);
    tr.appendChild(cell(f.reasons.join("; ")));
    rows.push(tr);
    for (const s of f.samples) samples.push({ feed: f.feed, ...s });
  }
  body.replaceChildren(...rows);
  samples.sort((a, b) => b.at - a.at);
  $("#samples").replaceChildren(...samples.slice(0, 15).map((s) => {
    const li = document.createElement("li");
    li.textContent = `${new Date(s.at).toLocaleTimeString()} ${s.feed} ${s.source}: ${s.reason} — ${s.excerpt}`;
    return li;
  }));
  // Connections and subscriptions per tier, summed over the WebSocket nodes that report.
  const ws = report.websocket || { nodes: 0, connections: {}, subscriptions: {} };
  const tiers = Object.keys(ws.connections);
  $("#websocket tbody").replaceChildren(...tiers.map((tier) => {
    const tr = document.createElement("tr");
    tr.dataset.tier = tier;
    tr.append(cell(tier), cell(String(ws.connections[tier] ?? 0), "num"), cell(String(ws.subscriptions[tier] ?? 0), "num"));
    return tr;
  }));
  $("#websocket-nodes").textContent = ws.nodes ? `${ws.nodes} node(s) reporting` : "no WebSocket node reporting";
  window.shfeeds.rows = rows.length;
  window.shfeeds.charts = charts;
  window.shfeeds.samples = samples.length;
}

async function loop() {
  try { await refresh(); } catch (err) { $("#updated").textContent = "control plane not answering: " + err; }
  setTimeout(loop, 5000);
}
loop();
