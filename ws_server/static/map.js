// The live city map: MapLibre GL JS (bundled by the service, no CDN, no tiles) drawing the base layers the
// server ships as GeoJSON and one feed from a viewport subscription of the public protocol.
// Everything is in the CRS the feed delivers (GCJ-02 unless the key's tier asks for WGS-84): the layers are
// fetched in that CRS, so layers and symbols line up.
import * as maplibregl from "/static/vendor/maplibre-gl.mjs";
import { Live } from "/static/map_live.js";
import { FEEDS, STALE, classOf, describe, describeHtml, escapeHtml, TREND_ARROWS } from "/static/map_symbols.js";
import { TrendBook } from "/static/map_trend.js";
import { Tour } from "/static/map_tour.js";

const params = new URLSearchParams(location.search);
const CRS = params.get("crs") === "wgs84" ? "wgs84" : "gcj02";
const SHANGHAI = [[120.85, 30.68], [121.98, 31.87]];
const EMPTY = { type: "FeatureCollection", features: [] };
const FLUSH_MS = 400; // at most this often a source is rebuilt from the live entities
const VIEWPORT_PAD = 0.1; // share of the view added on each side of the subscribed bbox

const state = {
  ready: false, feed: null, bbox: null, flushes: 0, consoleNotes: [],
  layers: {}, trends: new TrendBook(),
};
window.shfeeds = state; // for the browser test and curious users

const feedSelect = document.getElementById("feed");
const districtSelect = document.getElementById("district");
const statusEl = document.getElementById("status");
const legendEl = document.getElementById("legend");

// ------------------------------------------------------------------------------------------ base data

async function layer(name) {
  const r = await fetch(`/layers/${name}.geojson?crs=${CRS}`);
  if (!r.ok) throw new Error(`layer ${name}: HTTP ${r.status}`);
  return r.json();
}

const [districts, districtLabels, metroLines, metroStations, scenicAreas] = await Promise.all(
  ["districts", "district-labels", "metro-lines", "metro-stations", "scenic-areas"].map(layer),
);
state.layers = { districts, metroLines, metroStations, scenicAreas };

const byAdcode = new Map(districts.features.map((f) => [f.properties.adcode, f.properties]));
const stationNames = new Map(metroStations.features.map((f) => [f.properties.id, f.properties.name_en]));
const areasByCode = new Map(scenicAreas.features.map((f) => [f.properties.code, f.properties]));
const names = {
  station: (id) => stationNames.get(String(id)),
  district: (code) => { const d = byAdcode.get(String(code)); return d && `${d.name_zh} ${d.name_en}`; },
  area: (code) => areasByCode.get(code),
};

for (const f of districts.features) {
  const o = document.createElement("option");
  o.value = f.properties.adcode;
  o.textContent = `${f.properties.name_zh} ${f.properties.name_en}`;
  districtSelect.append(o);
}

// ------------------------------------------------------------------------------------------------- map

// Radius by zoom, times the feature's size (scenic areas are drawn larger).
const circleRadius = ["interpolate", ["linear"], ["zoom"],
  8, ["*", 3, ["get", "size"]], 12, ["*", 5, ["get", "size"]], 15, ["*", 7.5, ["get", "size"]], 18, ["*", 11, ["get", "size"]]];
const labelFont = ["Noto Sans CJK SC Regular"];

const map = new maplibregl.Map({
  container: "map",
  bounds: SHANGHAI,
  fitBoundsOptions: { padding: 10 },
  maxBounds: [[119.9, 30.2], [122.9, 32.3]],
  minZoom: 7,
  maxZoom: 19,
  attributionControl: false,
  localIdeographFontFamily: "'Noto Sans CJK SC', 'Noto Sans SC', 'PingFang SC', 'Microsoft YaHei', sans-serif",
  style: {
    version: 8,
    sources: {
      districts: { type: "geojson", data: districts },
      "district-labels": { type: "geojson", data: districtLabels },
      "metro-lines": { type: "geojson", data: metroLines },
      "metro-stations": { type: "geojson", data: metroStations },
      "scenic-areas": { type: "geojson", data: scenicAreas },
      entities: { type: "geojson", data: EMPTY, cluster: false, clusterMaxZoom: 12, clusterRadius: 40 },
      "tour-parking": { type: "geojson", data: EMPTY },
      "tour-charging": { type: "geojson", data: EMPTY },
    },
    layers: [
      { id: "sea", type: "background", paint: { "background-color": "#c9dbe8" } },
      { id: "district-fill", type: "fill", source: "districts", paint: { "fill-color": "#f4f2ec" } },
      { id: "district-line", type: "line", source: "districts",
        paint: { "line-color": "#8a96a3", "line-width": ["interpolate", ["linear"], ["zoom"], 8, 0.8, 13, 2] } },
      { id: "district-selected", type: "line", source: "districts", filter: ["==", ["get", "adcode"], ""],
        paint: { "line-color": "#16324f", "line-width": 3 } },
      { id: "scenic-area-fill", type: "fill", source: "scenic-areas", paint: { "fill-color": "#b9dfb0", "fill-opacity": 0.6 } },
      { id: "scenic-area-line", type: "line", source: "scenic-areas", paint: { "line-color": "#6fae62", "line-width": 1 } },
      { id: "metro-lines", type: "line", source: "metro-lines", layout: { "line-cap": "round", "line-join": "round" },
        paint: { "line-color": ["get", "colour"], "line-width": ["interpolate", ["linear"], ["zoom"], 8, 1.2, 14, 4], "line-opacity": 0.85 } },
      { id: "metro-stations", type: "circle", source: "metro-stations", minzoom: 11,
        paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 11, 2, 16, 5], "circle-color": "#ffffff",
          "circle-stroke-color": "#44505c", "circle-stroke-width": 1 } },
      { id: "district-labels", type: "symbol", source: "district-labels", maxzoom: 13,
        layout: { "text-field": ["format", ["get", "name_zh"], { "font-scale": 1.0 }, "\n", {}, ["get", "name_en"], { "font-scale": 0.8 }],
          "text-font": labelFont, "text-size": ["interpolate", ["linear"], ["zoom"], 8, 11, 12, 15] },
        paint: { "text-color": "#3c4a58", "text-halo-color": "#f4f2ec", "text-halo-width": 1.5 } },
      { id: "metro-station-labels", type: "symbol", source: "metro-stations", minzoom: 13.5,
        layout: { "text-field": ["get", "name_en"], "text-font": labelFont, "text-size": 11, "text-offset": [0, 1.1], "text-anchor": "top" },
        paint: { "text-color": "#44505c", "text-halo-color": "#fff", "text-halo-width": 1.2 } },
      { id: "scenic-area-labels", type: "symbol", source: "scenic-areas", minzoom: 12,
        layout: { "text-field": ["format", ["get", "name_zh"], {}, "\n", {}, ["get", "name_en"], { "font-scale": 0.85 }],
          "text-font": labelFont, "text-size": 12, "text-offset": [0, 1.4], "text-anchor": "top" },
        paint: { "text-color": "#2f6b27", "text-halo-color": "#fff", "text-halo-width": 1.5 } },
      { id: "clusters", type: "circle", source: "entities", filter: ["has", "point_count"],
        paint: { "circle-color": "#2b3f63", "circle-opacity": 0.9, "circle-stroke-color": "#fff", "circle-stroke-width": 1.5,
          "circle-radius": ["step", ["get", "point_count"], 11, 50, 15, 500, 20, 2000, 26] } },
      { id: "cluster-counts", type: "symbol", source: "entities", filter: ["has", "point_count"],
        layout: { "text-field": ["get", "point_count_abbreviated"], "text-font": labelFont, "text-size": 11,
          "text-allow-overlap": true, "text-ignore-placement": true },
        paint: { "text-color": "#ffffff" } },
      { id: "entities", type: "circle", source: "entities", filter: ["!", ["has", "point_count"]],
        paint: { "circle-color": ["get", "colour"], "circle-radius": circleRadius,
          "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } },
      { id: "entity-arrows", type: "symbol", source: "entities", filter: ["has", "arrow"],
        layout: { "text-field": ["get", "arrow"], "text-font": labelFont, "text-size": 16, "text-offset": [1.1, 0],
          "text-anchor": "left", "text-allow-overlap": true, "text-ignore-placement": true },
        paint: { "text-color": ["get", "colour"], "text-halo-color": "#fff", "text-halo-width": 1.5 } },
      { id: "tour-parking", type: "circle", source: "tour-parking",
        paint: { "circle-color": ["get", "colour"], "circle-radius": 7, "circle-stroke-color": "#16324f", "circle-stroke-width": 1.5 } },
      { id: "tour-charging", type: "circle", source: "tour-charging",
        paint: { "circle-color": ["get", "colour"], "circle-radius": 7, "circle-stroke-color": "#5b2a86", "circle-stroke-width": 2.5 } },
    ],
  },
});
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
map.touchZoomRotate.disableRotation();
map.dragRotate.disable();
state.map = map;
await new Promise((resolve) => (map.loaded() ? resolve() : map.once("load", resolve)));

// ------------------------------------------------------------------------------- live entities → map

const sources = new Map(); // source id -> {records(), feed, pending, last}
// Whether a source still has records waiting to be drawn (the browser test waits for none, not for a time).
state.flushPending = () => [...sources.values()].some((s) => s.pending);

function features(feed, sub) {
  const out = [];
  for (const [id, r] of sub.entities) {
    if (typeof r.lng !== "number" || typeof r.lat !== "number") continue;
    const stale = sub.stale.has(id);
    const cls = classOf(feed, r, stale);
    const props = { id, colour: cls.colour, cls: cls.key, size: feed === "scenic" ? 1.6 : 1 };
    if (feed === "scenic") {
      const t = state.trends.trend(id);
      if (t) props.arrow = TREND_ARROWS[t.label].arrow;
    }
    out.push({ type: "Feature", geometry: { type: "Point", coordinates: [r.lng, r.lat] }, properties: props });
  }
  return { type: "FeatureCollection", features: out };
}

function scheduleSource(sourceId, feed, sub) {
  let s = sources.get(sourceId);
  if (!s) { s = { pending: null, last: 0 }; sources.set(sourceId, s); }
  s.feed = feed; s.sub = sub;
  if (s.pending) return;
  const flush = () => {
    // Re-tiling thousands of points while the user drags costs frames: wait for the map to stop.
    if (map.isMoving()) { map.once("moveend", flush); return; }
    s.pending = null; s.last = performance.now();
    map.getSource(sourceId).setData(features(s.feed, s.sub));
    state.flushes++;
  };
  s.pending = setTimeout(flush, Math.max(0, FLUSH_MS - (performance.now() - s.last)));
}

function setStatus(text) {
  state.status = text;
  const n = main ? main.entities.size : 0;
  const what = { bus: "辆公交 buses", metro: "列地铁 trains", parking: "个停车场 car parks", charging: "个充电站 chargers", scenic: "个景区 scenic areas" }[state.feed] || "";
  statusEl.textContent = `${text === "live" ? "实时 live" : text} · ${n.toLocaleString("en")} ${what}`;
}

const key = params.get("key");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const live = new Live({
  url: `${scheme}//${location.host}/${key ? "?key=" + encodeURIComponent(key) : ""}`,
  onStatus: setStatus,
  options: CRS === "wgs84" ? { crs: "wgs84" } : null, // licensed and operator keys only
});
state.live = live;
let main = null;

function onScenic(sub) { for (const r of sub.entities.values()) state.trends.add(r); }

function viewportBbox() {
  const b = map.getBounds();
  const dx = (b.getEast() - b.getWest()) * VIEWPORT_PAD, dy = (b.getNorth() - b.getSouth()) * VIEWPORT_PAD;
  const r = (v) => Math.round(v * 1e5) / 1e5;
  return [r(Math.max(-180, b.getWest() - dx)), r(Math.max(-85, b.getSouth() - dy)),
    r(Math.min(180, b.getEast() + dx)), r(Math.min(85, b.getNorth() + dy))];
}

function subscribeMain(feed) {
  state.feed = feed;
  map.getSource("entities").setClusterOptions({ cluster: FEEDS[feed].cluster, clusterMaxZoom: 12, clusterRadius: 40 });
  state.bbox = viewportBbox();
  main = live.subscribe("map", feed, { bbox: state.bbox }, (sub) => {
    if (feed === "scenic") onScenic(sub);
    scheduleSource("entities", feed, sub);
    setStatus("live");
  });
  state.main = main;
  scheduleSource("entities", feed, main);
  renderLegend(feed);
}

let viewportTimer = null;
map.on("moveend", () => {
  clearTimeout(viewportTimer);
  viewportTimer = setTimeout(() => {
    const bbox = viewportBbox();
    if (!main || (state.bbox && bbox.every((v, i) => v === state.bbox[i]))) return;
    state.bbox = bbox;
    main.update({ bbox });
  }, 150);
});

// ------------------------------------------------------------------------------------------- legend

function swatch(colour, line = false) {
  return `<span class="swatch${line ? " line" : ""}" style="background:${colour}"></span>`;
}

function renderLegend(feed) {
  const f = FEEDS[feed];
  const items = f.classes.map((c) => `<li data-class="${c.key}">${swatch(c.colour)}${escapeHtml(c.zh)} · ${escapeHtml(c.en)}</li>`);
  items.push(`<li data-class="stale">${swatch(STALE.colour)}${STALE.zh} · ${STALE.en}</li>`);
  if (f.cluster) items.push(`<li data-class="cluster">${swatch("#2b3f63")}聚合（数字为数量）· cluster (count)</li>`);
  if (feed === "scenic") items.push(`<li>↑ ↓ → 15 分钟趋势 · 15-min trend</li>`);
  if (state.tourism) {
    items.push(`<li>${swatch("#fff")}<span style="margin-left:-19px;width:13px;height:13px;border-radius:50%;border:2px solid #16324f"></span>停车 · parking</li>`);
    items.push(`<li>${swatch("#fff")}<span style="margin-left:-19px;width:13px;height:13px;border-radius:50%;border:2.5px solid #5b2a86"></span>充电 · chargers</li>`);
  }
  items.push(`<li>${swatch("#E3002B", true)}地铁线路 · metro lines</li>`);
  items.push(`<li>${swatch("#b9dfb0")}景区范围 · scenic grounds</li>`);
  // On a phone the legend starts folded, so it does not cover the map; a tap on its title opens it.
  const open = window.matchMedia("(max-width: 640px)").matches ? "" : " open";
  legendEl.innerHTML = `<details${open}><summary><h2>${escapeHtml(f.zh)} · ${escapeHtml(f.en)}</h2></summary>`
    + `<ul>${items.join("")}</ul></details>`;
}

// --------------------------------------------------------------------------------------------- popups

const popup = new maplibregl.Popup({ closeButton: true, maxWidth: "300px" });
state.popup = popup;

function showRecord(feed, sub, id, lngLat) {
  const r = sub.entities.get(id);
  if (!r) return;
  const d = describe(feed, r, sub.stale.has(id), names, { trend: feed === "scenic" ? state.trends.trend(id) : null });
  popup.setLngLat(lngLat).setHTML(describeHtml(d)).addTo(map);
  state.lastPopup = d;
}

map.on("click", "entities", (e) => showRecord(state.feed, main, e.features[0].properties.id, e.lngLat));
map.on("click", "clusters", async (e) => {
  const f = e.features[0];
  const zoom = await map.getSource("entities").getClusterExpansionZoom(f.properties.cluster_id);
  map.easeTo({ center: f.geometry.coordinates, zoom });
});
map.on("click", "metro-stations", (e) => {
  if (map.queryRenderedFeatures(e.point, { layers: ["entities", "clusters"] }).length) return;
  const p = e.features[0].properties;
  popup.setLngLat(e.lngLat).setHTML(describeHtml({ title: `地铁站 · ${p.name_en}`, rows: [["线路 Lines", p.lines]] })).addTo(map);
});
for (const id of ["entities", "clusters", "tour-parking", "tour-charging", "metro-stations"]) {
  map.on("mouseenter", id, () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
}

// ----------------------------------------------------------------------------------- district choice

function findDistrict(text) {
  const t = (text || "").trim().toLowerCase().replace(/区$/, "");
  if (!t) return null;
  for (const f of districts.features) {
    const p = f.properties;
    if (p.adcode === t || p.name_zh.replace(/区$/, "") === t || p.name_en.toLowerCase() === t) return p;
  }
  return null;
}

function chooseDistrict(adcode, animate = true) {
  const p = byAdcode.get(adcode);
  map.setFilter("district-selected", ["==", ["get", "adcode"], p ? adcode : ""]);
  if (p) {
    const [x0, y0, x1, y1] = p.bbox;
    map.fitBounds([[x0, y0], [x1, y1]], { padding: 24, duration: animate ? 600 : 0 });
  } else {
    map.fitBounds(SHANGHAI, { padding: 10, duration: animate ? 600 : 0 });
  }
  state.district = p ? adcode : null;
  const u = new URL(location.href);
  if (p) u.searchParams.set("district", p.name_en); else u.searchParams.delete("district");
  history.replaceState(null, "", u);
}
districtSelect.onchange = () => chooseDistrict(districtSelect.value);

// ------------------------------------------------------------------------------------- feed choice

const tour = new Tour({ live, map, areasByCode, trends: state.trends, scheduleSource, popup, showRecord });
state.tour = tour;

function chooseFeed(value) {
  state.tourism = value === "tourism";
  feedSelect.value = value;
  popup.remove();
  if (state.tourism) tour.open(); else tour.close();
  map.resize(); // the panel takes room: the viewport the subscription asks for is what is left
  subscribeMain(state.tourism ? "scenic" : value);
  const u = new URL(location.href);
  u.searchParams.set("feed", value);
  history.replaceState(null, "", u);
}
feedSelect.onchange = () => chooseFeed(feedSelect.value);

const initialDistrict = findDistrict(params.get("district"));
if (initialDistrict) { districtSelect.value = initialDistrict.adcode; chooseDistrict(initialDistrict.adcode, false); }
const initialFeed = params.get("feed");
chooseFeed(initialFeed in FEEDS || initialFeed === "tourism" ? initialFeed : "bus");
if (params.get("area")) tour.select(params.get("area"));
live.connect();
state.ready = true;
