// The live map: district outlines from the server, entities from one protocol v1 subscription.
// Coordinates are GCJ-02 (the public default), drawn with a local equirectangular projection.
"use strict";

const state = {
  entities: new Map(),   // id -> record
  stale: new Set(),
  districts: null,
  status: "connecting",
  frames: 0,
  seq: null, epoch: null, stream: null,
  errors: [],
};
window.shfeeds = state;  // for the end-to-end test and for curious users

const params = new URLSearchParams(location.search);
const canvas = document.getElementById("map");
const ctx = canvas.getContext("2d");
const feedSelect = document.getElementById("feed");
const districtInput = document.getElementById("district");
feedSelect.value = params.get("feed") || "bus";
districtInput.value = params.get("district") || "";

let view = null;  // {x0, y0, scale, kx}

function fitView() {
  canvas.width = canvas.clientWidth * devicePixelRatio;
  canvas.height = canvas.clientHeight * devicePixelRatio;
  if (!state.districts) return;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const f of state.districts.features) {
    forEachRing(f.geometry, ring => ring.forEach(([x, y]) => {
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }));
  }
  const kx = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const scale = Math.min(canvas.width / ((x1 - x0) * kx), canvas.height / (y1 - y0)) * 0.95;
  view = { x0, y1, scale, kx };
}

function project(lng, lat) {
  return [(lng - view.x0) * view.kx * view.scale + 10, (view.y1 - lat) * view.scale + 10];
}

function forEachRing(geometry, fn) {
  const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  for (const poly of polys) for (const ring of poly) fn(ring);
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!view) return;
  ctx.strokeStyle = "#8795a1"; ctx.lineWidth = 1; ctx.fillStyle = "#e8ece6";
  for (const f of state.districts.features) {
    ctx.beginPath();
    forEachRing(f.geometry, ring => ring.forEach(([x, y], i) => {
      const [px, py] = project(x, y);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    }));
    ctx.fill("evenodd"); ctx.stroke();
  }
  for (const [id, r] of state.entities) {
    if (typeof r.lng !== "number") continue;
    const [px, py] = project(r.lng, r.lat);
    ctx.fillStyle = state.stale.has(id) ? "#aaa" : "#d2452c";
    ctx.beginPath(); ctx.arc(px, py, 2.5 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill();
  }
}

let drawPending = false;
function scheduleDraw() {
  if (!drawPending) { drawPending = true; requestAnimationFrame(() => { drawPending = false; draw(); }); }
}

function setStatus(text) {
  state.status = text;
  document.getElementById("status").textContent = `${text} · ${state.entities.size} ${feedSelect.value}`;
}

let ws = null, backoff = 500;

function subscribeMessage() {
  const msg = { type: "subscribe", id: "map", feed: feedSelect.value };
  const district = districtInput.value.trim();
  if (district) msg.filter = { district };
  if (state.epoch !== null && state.seq !== null) msg.resume = { epoch: state.epoch, seq: state.seq };
  return msg;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const key = params.get("key");
  ws = new WebSocket(`${scheme}//${location.host}/${key ? "?key=" + encodeURIComponent(key) : ""}`, ["shfeeds.v1.json"]);
  ws.onopen = () => { backoff = 500; setStatus("live"); ws.send(JSON.stringify(subscribeMessage())); };
  ws.onmessage = ev => handle(JSON.parse(ev.data));
  ws.onclose = () => {
    setStatus("reconnecting");
    setTimeout(connect, Math.random() * backoff);
    backoff = Math.min(30000, backoff * 2);
  };
}

function handle(m) {
  state.frames++;
  switch (m.type) {
    case "subscribed": case "updated":
      state.stream = m.stream; state.epoch = m.epoch; state.seq = m.seq; break;
    case "reset":
      state.stream = m.stream; state.epoch = m.epoch; state.seq = m.seq;
      state.entities.clear(); state.stale.clear(); break;
    case "snapshot":
      if (m.part === 0) { state.entities.clear(); state.stale.clear(); }
      for (const r of m.records) state.entities.set(r.id, r);
      state.seq = m.seq; break;
    case "delta":
      for (const r of m.upsert) { state.entities.set(r.id, r); state.stale.delete(r.id); }
      for (const id of m.remove) { state.entities.delete(id); state.stale.delete(id); }
      for (const id of m.stale) state.stale.add(id);
      state.seq = m.seq; break;
    case "error":
      state.errors.push(m); setStatus(`error: ${m.code}`); return;
  }
  setStatus("live");
  scheduleDraw();
}

function resubscribe() {
  state.epoch = state.seq = null;
  state.entities.clear(); state.stale.clear();
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: "unsubscribe", id: "map" }));
    ws.send(JSON.stringify(subscribeMessage()));
  }
  scheduleDraw();
}
feedSelect.onchange = resubscribe;
districtInput.onchange = resubscribe;
window.onresize = () => { fitView(); scheduleDraw(); };

fetch("/districts.geojson").then(r => r.json()).then(gj => {
  state.districts = gj; fitView(); scheduleDraw(); connect();
});
