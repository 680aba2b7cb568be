// The tourism view: every scenic area listed by comfort with its trend, and for a chosen area the car parks
// and chargers near it (a `near` subscription of each feed around the area), in Chinese and English.
import { COMFORT, TREND_ARROWS, classOf, connectorCounts, escapeHtml } from "/static/map_symbols.js";

const NEAR_M = 1000; // an easy walk from the area's edge, as the stream layer's "near a scenic area"
const LIST_MAX = 5; // nearest first: a phone shows them above the list of areas

function distanceM(a, b) {
  const k = Math.PI / 180, r = 6371008.8;
  const x = (b[0] - a[0]) * k * Math.cos(((a[1] + b[1]) / 2) * k), y = (b[1] - a[1]) * k;
  return Math.hypot(x, y) * r;
}

function comfortRank(r) {
  const i = COMFORT.findIndex((c) => c.key === r.comfort_band);
  return i < 0 ? COMFORT.length : i;
}

export class Tour {
  constructor({ live, map, areasByCode, trends, scheduleSource, showRecord }) {
    Object.assign(this, { live, map, areasByCode, trends, scheduleSource, showRecord });
    this.panel = document.getElementById("tour");
    this.list = document.getElementById("tour-areas");
    this.near = document.getElementById("tour-near");
    this.scenic = null; this.parking = null; this.charging = null;
    this.selected = null;
    this.renderPending = false;
    map.on("click", "tour-parking", (e) => showRecord("parking", this.parking, e.features[0].properties.id, e.lngLat));
    map.on("click", "tour-charging", (e) => showRecord("charging", this.charging, e.features[0].properties.id, e.lngLat));
  }

  open() {
    this.panel.hidden = false;
    if (!this.scenic) {
      this.scenic = this.live.subscribe("tour-scenic", "scenic", null, (sub) => {
        for (const r of sub.entities.values()) this.trends.add(r);
        this.render();
      });
    }
  }

  close() {
    this.panel.hidden = true;
    for (const name of ["scenic", "parking", "charging"]) { this[name]?.close(); this[name] = null; }
    this.selected = null;
    this.near.hidden = true;
    for (const id of ["tour-parking", "tour-charging"]) this.map.getSource(id).setData({ type: "FeatureCollection", features: [] });
  }

  // Choose a scenic area: fly to it and follow the car parks and chargers within an easy walk of it.
  select(code) {
    const area = this.areasByCode.get(code);
    if (!area) return;
    if (this.panel.hidden) this.open();
    this.selected = code;
    const [lng, lat] = area.centre;
    const filter = { near: { lng, lat, radius_m: Math.round(area.radius_m + NEAR_M) } };
    const onChange = () => { this.render(); this.draw(); };
    this.parking = this.live.subscribe("tour-parking", "parking", filter, onChange);
    this.charging = this.live.subscribe("tour-charging", "charging", filter, onChange);
    this.map.flyTo({ center: [lng, lat], zoom: 14.2, duration: 800 });
    this.render();
  }

  draw() {
    for (const [sourceId, feed, sub] of [["tour-parking", "parking", this.parking], ["tour-charging", "charging", this.charging]]) {
      if (sub) this.scheduleSource(sourceId, feed, sub);
    }
  }

  render() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => { this.renderPending = false; this._render(); });
  }

  _render() {
    if (!this.scenic) return;
    const records = [...this.scenic.entities.values()].sort((a, b) =>
      comfortRank(a) - comfortRank(b) || (a.count / (a.capacity || 1) || 0) - (b.count / (b.capacity || 1) || 0));
    this.list.innerHTML = records.map((r) => this._areaItem(r)).join("");
    for (const li of this.list.children) li.onclick = () => this.select(li.dataset.code);
    if (!this.selected) { this.near.hidden = true; return; }
    const area = this.areasByCode.get(this.selected);
    this.near.hidden = false;
    document.getElementById("tour-near-title").textContent = `${area.name_zh} · ${area.name_en}`;
    document.getElementById("tour-parking").innerHTML = this._nearItems("parking", this.parking, area, (r) =>
      typeof r.free === "number" ? `空位 ${r.free} / ${r.capacity ?? "?"} free` : `空位 ${r.free_band ?? "?"} free`);
    document.getElementById("tour-charging").innerHTML = this._nearItems("charging", this.charging, area, (r) => {
      const n = connectorCounts(r);
      return n ? `空闲 ${n.available} / ${n.total} free` : "—";
    });
  }

  _areaItem(r) {
    const area = this.areasByCode.get(r.id) || { name_zh: r.name || r.id, name_en: "" };
    const cls = classOf("scenic", r, this.scenic.stale.has(r.id));
    const t = this.trends.trend(r.id);
    const arrow = t ? TREND_ARROWS[t.label] : null;
    const visitors = typeof r.count === "number" ? r.count.toLocaleString("en") : String(r.count ?? "?");
    return `<li data-code="${escapeHtml(r.id)}" aria-selected="${r.id === this.selected}">
      <span class="swatch" style="background:${cls.colour}"></span>
      <span class="trend" title="${arrow ? `${arrow.zh} ${arrow.en}` : "趋势待定 trend not known yet"}">${arrow ? arrow.arrow : "·"}</span>
      <span class="names"><span class="zh">${escapeHtml(area.name_zh)}</span><span class="en">${escapeHtml(area.name_en)}</span></span>
      <span class="figure">${escapeHtml(cls.zh)} ${escapeHtml(cls.en)}<br>${escapeHtml(visitors)} 人 visitors</span></li>`;
  }

  _nearItems(feed, sub, area, figure) {
    if (!sub) return "";
    const centre = area.centre;
    const rows = [...sub.entities.values()]
      .filter((r) => typeof r.lng === "number")
      .map((r) => ({ r, d: distanceM(centre, [r.lng, r.lat]) }))
      .sort((a, b) => a.d - b.d)
      .slice(0, LIST_MAX);
    if (!rows.length) return `<li>附近暂无 · none within ${NEAR_M} m</li>`;
    return rows.map(({ r, d }) => {
      const cls = classOf(feed, r, sub.stale.has(r.id));
      return `<li data-id="${escapeHtml(r.id)}"><span class="swatch" style="background:${cls.colour}"></span>
        <span class="names"><span class="zh">${escapeHtml(r.name || r.id)}</span><span class="en">${Math.round(d)} m · ${escapeHtml(cls.en)}</span></span>
        <span class="figure">${escapeHtml(figure(r))}</span></li>`;
    }).join("");
  }
}
